"""Deployments: a real `prefect server start` on 127.0.0.1 serves an example flow, run through the API."""

import os
import subprocess
import sys
import time

import pytest
import yaml
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.deployments import run_deployment
from prefect.settings import PREFECT_API_URL, temporary_settings

from helpers.paths import REPO
from helpers.servers import start_on_a_free_port


def test_prefect_yaml_declares_valid_deployments():
    from prefect.cli.deploy._models import PrefectYamlModel

    config = PrefectYamlModel.model_validate(yaml.safe_load((REPO / "prefect.yaml").read_text()))
    names = [d.name for d in config.deployments]
    assert {"vqe-h2-nightly", "qaoa-maxcut", "vqe-sweep", "resume-demo", "hybrid-job"} <= set(names)
    nightly = next(d for d in config.deployments if d.name == "vqe-h2-nightly")
    assert nightly.schedules[0].cron == "0 2 * * *"
    for deployment in config.deployments:
        path, function = deployment.entrypoint.split(":")
        assert f"def {function}(" in (REPO / path).read_text()


@pytest.fixture
def standalone_server(tmp_path):
    """A `prefect server start` of this test's own, as a user runs it (the session's is a test server)."""
    env = dict(os.environ, PREFECT_HOME=str(tmp_path / "prefect-home"), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_BRAKET_HOME=str(tmp_path / "engine"),
               PREFECT_RESULTS_LOCAL_STORAGE_PATH=str(tmp_path / "results"))
    env.pop("PREFECT_TEST_MODE", None)

    def start(port):
        return subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port",
                                 str(port), "--no-ui"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    server, port = start_on_a_free_port(start, lambda port: f"http://127.0.0.1:{port}/api/health", timeout=180,
                                        expect=b"true")
    yield dict(env, PREFECT_API_URL=f"http://127.0.0.1:{port}/api")
    server.terminate()
    server.wait(timeout=30)


def test_served_flow_is_triggered_through_the_api(standalone_server):
    env = standalone_server
    code = ("import sys; sys.path.insert(0, 'flows'); from vqe_h2 import vqe_h2; "
            "vqe_h2.serve(name='vqe-h2-test', parameters={'max_iterations': 4, 'tolerance': 0.0}, "
            "print_starting_message=False)")
    serving = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with temporary_settings({PREFECT_API_URL: env["PREFECT_API_URL"]}):
            with get_client(sync_client=True) as client:
                deadline = time.monotonic() + 120
                while True:
                    try:
                        client.read_deployment_by_name("vqe-h2/vqe-h2-test")
                        break
                    except Exception:
                        if time.monotonic() > deadline or serving.poll() is not None:
                            raise
                        time.sleep(0.5)
                flow_run = run_deployment("vqe-h2/vqe-h2-test", timeout=0)
                deadline = time.monotonic() + 300
                while True:
                    flow_run = client.read_flow_run(flow_run.id)
                    if flow_run.state.is_final() or time.monotonic() > deadline:
                        break
                    time.sleep(1)
                assert flow_run.state.is_completed(), flow_run.state
                artifacts = client.read_artifacts(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run.id])))
        experiment = f"vqe-h2-{str(flow_run.id)[:8]}"
        keys = {a.key for a in artifacts}
        assert {f"{experiment}-progress", f"{experiment}-iterations", f"{experiment}-summary"} <= keys
    finally:
        serving.terminate()
        serving.wait(timeout=30)
