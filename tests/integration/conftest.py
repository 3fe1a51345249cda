"""The integration tier: a real Prefect server for the session, moto's server and the local Braket
endpoint on 127.0.0.1, each started by the tests and stopped by its process."""

import os
import subprocess
import sys

import boto3
import pytest
from botocore.stub import Stubber

from helpers.servers import free_port, wait_until_up
from prefect_braket.backends.aws.backend import AwsBackend


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


@pytest.fixture(scope="session")


def moto_endpoint():
    """moto's standalone server on 127.0.0.1, for S3, CloudWatch Logs, STS and IAM over real HTTP."""
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
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "prefect_braket.endpoint", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_until_up(f"{url}/moto-api/", server, timeout=120)
    yield url
    server.terminate()
    server.wait(timeout=30)


@pytest.fixture


def aws_session(monkeypatch):
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AMZN_BRAKET_OUT_S3_BUCKET", "BRAKET_JOBS_ROLE_ARN"):
        monkeypatch.delenv(name, raising=False)
    return boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")


@pytest.fixture


def aws(aws_session, moto_endpoint):
    """An AwsBackend with a stubbed Braket client and S3/Logs/STS/IAM on the moto server."""
    client = aws_session.client("braket", region_name="us-east-1")
    stubber = Stubber(client)
    stubber.activate()
    backend = AwsBackend(session=aws_session, region="us-east-1", endpoint_url=moto_endpoint, braket_client=client)
    calls = []
    client.meta.events.register("provide-client-params.braket.*",
                                lambda params, model, **kw: calls.append((model.name, dict(params))))
    yield backend, stubber, calls
    stubber.deactivate()
