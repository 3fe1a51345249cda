import os
from pathlib import Path

import pytest

from prefect_braket.backends.local.engine import LocalEngine
from prefect_braket.core.states import TERMINAL_STATES


@pytest.fixture(scope="session", autouse=True)
def prefect_server(tmp_path_factory):
    """One real Prefect test server for the whole session (20-40 s to start on 2 cores)."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ["PREFECT_RESULTS_LOCAL_STORAGE_PATH"] = str(tmp_path_factory.mktemp("prefect-results"))
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        with prefect_test_harness(server_startup_timeout=180):
            yield


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


def job_count(engine: LocalEngine) -> int:
    arns = engine.root / "arns"
    return len(list(arns.iterdir())) if arns.exists() else 0


def wait_for(predicate, timeout=10.0, interval=0.02):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


def latest_artifacts(flow_run_id) -> dict:
    """The newest version of each keyed artifact of a flow run."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return {a.key: a for a in sorted((a for a in artifacts if a.key), key=lambda a: a.created)}


class LosesFirstCreate:
    """A backend that creates the job, then loses the first response: what a dropped connection does."""

    lost = 0

    def create_job(self, spec, client_token=None):
        arn = super().create_job(spec, client_token)
        if type(self).lost == 0:
            type(self).lost += 1
            raise ConnectionError("connection reset before the response arrived")
        return arn


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_up(url: str, process, timeout: float = 180.0, expect: bytes | None = None) -> None:
    """Polls `url` until it answers (with `expect`, if given); fails if `process` exits first."""
    import time
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        try:
            body = urllib.request.urlopen(url, timeout=2).read()
            if expect is None or body == expect:
                return
        except OSError:
            pass
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            raise RuntimeError(f"{url} did not come up")
        time.sleep(0.2)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z")


@pytest.fixture(scope="session")
def moto_endpoint():
    """moto's standalone server on 127.0.0.1, for S3, CloudWatch Logs, STS and IAM over real HTTP."""
    import subprocess
    import sys

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    wait_until_up(f"{endpoint}/moto-api/", server, timeout=30)
    yield endpoint
    server.terminate()
    server.wait(timeout=10)


@pytest.fixture(scope="module")
def endpoint():
    """The package's local Braket endpoint (`python -m prefect_braket.endpoint`), one per test module."""
    import subprocess
    import sys

    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "prefect_braket.endpoint", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_until_up(f"{url}/moto-api/", server, timeout=120)
    yield url
    server.terminate()
    server.wait(timeout=30)


def endpoint_control(url: str, route: str, payload=None):
    """GET (or, with a payload, POST) one of the endpoint's `/_endpoint/` routes."""
    import json
    import urllib.request

    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(f"{url}/_endpoint/{route}", data=data, method="GET" if data is None else "POST")
    return json.loads(urllib.request.urlopen(request).read())


REPORTS: list[tuple[str, dict]] = []


def pytest_terminal_summary(terminalreporter):
    """Prints what report-making tests (the reliability suite) measured, in every run."""
    import json

    for title, report in REPORTS:
        terminalreporter.write_sep("-", title)
        terminalreporter.write_line(json.dumps(report, indent=1))


@pytest.fixture
def aws_session(monkeypatch):
    import boto3

    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AMZN_BRAKET_OUT_S3_BUCKET", "BRAKET_JOBS_ROLE_ARN"):
        monkeypatch.delenv(name, raising=False)
    return boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
