"""The integration tier: a real Prefect server for the session, moto's server and the local Braket
endpoint on 127.0.0.1, each started by the tests and stopped by its process."""

import os
import sys

import boto3
import pytest
from botocore.stub import Stubber

from helpers.servers import endpoint_control, start_reporting_its_url, wait_until_up
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
def moto_endpoint(tmp_path_factory):
    """moto's standalone server on 127.0.0.1, for S3, CloudWatch Logs, STS and IAM over real HTTP.

    One server for the session: a test that needs resources nobody else has (no role yet, a log
    group it creates) takes an account of its own (`helpers.aws.own_account`)."""
    server, endpoint = start_reporting_its_url(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", "0"],
        tmp_path_factory.mktemp("moto") / "output.txt", timeout=30)
    wait_until_up(f"{endpoint}/moto-api/", server, timeout=30)
    yield endpoint
    server.terminate()
    server.wait(timeout=10)


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory):
    """The package's local Braket endpoint (`python -m prefect_braket.endpoint`), one per test module."""
    server, url = start_reporting_its_url([sys.executable, "-m", "prefect_braket.endpoint", "--port", "0"],
                                          tmp_path_factory.mktemp("endpoint") / "output.txt", timeout=120)
    wait_until_up(f"{url}/moto-api/", server, timeout=120)
    yield url
    server.terminate()
    server.wait(timeout=30)


@pytest.fixture
def endpoint_devices(endpoint):
    """The endpoint, whose device set the test may change: it is put back whole afterwards."""
    served = endpoint_control(endpoint, "devices")
    yield endpoint
    endpoint_control(endpoint, "devices", served)


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
