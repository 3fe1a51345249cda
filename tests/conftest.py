"""Fixtures every test has: an embedded engine of its own. The integration tier's servers are in
tests/integration/conftest.py; the unit tier (tests/unit) needs none of them."""

import json

import pytest

from helpers.reports import REPORTS
from prefect_braket.backends.local.engine import LocalEngine
from prefect_braket.core.states import TERMINAL_STATES


@pytest.fixture(autouse=True)
def engine(tmp_path, monkeypatch) -> LocalEngine:
    """An embedded engine of this test's own; whatever job it leaves running is cancelled after."""
    root = tmp_path / "engine"
    monkeypatch.setenv("PREFECT_BRAKET_HOME", str(root))
    engine = LocalEngine(root)
    yield engine
    for index in (root / "arns").glob("*") if (root / "arns").exists() else []:
        arn = "local:job/" + index.name
        if engine.get_job(arn)["status"] not in TERMINAL_STATES:
            engine.cancel_job(arn)


def pytest_terminal_summary(terminalreporter):
    """Prints what report-making tests (the reliability suite) measured, in every run."""
    for title, report in REPORTS:
        terminalreporter.write_sep("-", title)
        terminalreporter.write_line(json.dumps(report, indent=1))
