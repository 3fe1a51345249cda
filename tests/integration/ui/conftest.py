"""A Prefect server that serves its UI, and headless Chromium to look at it.

The session's test server (tests/integration/conftest.py) is Prefect's temporary one, which never
serves the UI. These tests start a server of their own: the UI on, `PREFECT_UI_API_URL` set to its
own API (on a port other than 4200 the V2 UI calls 127.0.0.1:4200 without it), a database of its
own. They run their flows against it, so they do not start the session's server.

The browser is Debian's Chromium (/usr/bin/chromium, package `chromium`, which .ci/run installs)
driven by Playwright's Python package: Playwright's own browser download is never used. Without
either, every test here is skipped, saying which is missing."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.servers import start_on_a_free_port

CHROMIUM = Path("/usr/bin/chromium")
# Root on a machine whose network is closed: no sandbox, and none of Chromium's own traffic (its
# background connections are refused, many at a time, and slow every page down).
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
HERE = Path(__file__).resolve().parent


def browser_missing() -> str | None:
    """Why no browser can be driven here, or None."""
    if importlib.util.find_spec("playwright") is None:
        return "Playwright's Python package is not installed (it is in the test extra: requirements-test.lock)"
    if not CHROMIUM.exists():
        return f"no browser: {CHROMIUM} is missing (Debian's `chromium` package, which .ci/run installs)"
    return None


def pytest_collection_modifyitems(config, items):
    reason = browser_missing()
    if reason:
        for item in items:
            if HERE in Path(str(item.fspath)).resolve().parents:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="module", autouse=True)
def prefect_server(tmp_path_factory):
    """Stands in for the session's test server here, which these tests do not use (`ui_server`):
    the same settings for the flows, no server."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
        patch.setenv("PREFECT_RESULTS_LOCAL_STORAGE_PATH", str(tmp_path_factory.mktemp("prefect-results")))
        with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
            yield


@pytest.fixture(scope="module")
def ui_server(tmp_path_factory):
    """A Prefect server with both UIs (V1 at /, V2 at /v2) on 127.0.0.1; yields its base URL."""
    root = tmp_path_factory.mktemp("ui-server")
    env = {name: value for name, value in os.environ.items()
           if not name.startswith("PREFECT__SERVER") and name != "PREFECT_API_URL"}

    def start(port: int) -> subprocess.Popen:
        url = f"http://127.0.0.1:{port}"
        with open(root / "output.txt", "ab") as output:
            return subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "--factory", "prefect.server.api.server:create_app",
                 "--host", "127.0.0.1", "--port", str(port), "--log-level", "error", "--lifespan", "on"],
                stdout=output, stderr=subprocess.STDOUT,
                env={**env, "PREFECT_UI_ENABLED": "true", "PREFECT_UI_API_URL": f"{url}/api",
                     "PREFECT_SERVER_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{root / 'prefect.db'}",
                     "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_HOME": str(root / "home")})

    server, port = start_on_a_free_port(start, lambda port: f"http://127.0.0.1:{port}/api/health", timeout=180)
    yield f"http://127.0.0.1:{port}"
    server.terminate()
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


@pytest.fixture(scope="module")
def browser(runs):
    """Headless Chromium (Playwright gives it a new empty profile); each test opens a context of its own.

    It starts once the tests' flows have run (`runs`, in the test module): Playwright's sync API
    keeps an event loop running in this thread, where `asyncio.run` (the VQE flow) cannot."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
