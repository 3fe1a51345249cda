"""The local Braket endpoint: the AWS path (BraketDevice, the AWS backend, boto3, S3) over real HTTP."""

import math
import subprocess
import sys

import boto3
import pytest
from conftest import free_port, wait_until_up
from prefect_aws import AwsCredentials

from prefect_braket import BraketDevice

SV1 = "arn:aws:braket:::device/quantum-simulator/amazon/sv1"
PROGRAM = """OPENQASM 3.0;
input float theta;
qubit[1] q;
rx(theta) q[0];
#pragma braket result expectation z(q[0])
"""


@pytest.fixture(scope="module")
def endpoint():
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "prefect_braket.endpoint", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_until_up(f"{url}/moto-api/", server, timeout=120)
    yield url
    server.terminate()
    server.wait(timeout=30)


def test_devices_are_described_through_the_endpoint(endpoint):
    braket = boto3.client("braket", endpoint_url=endpoint, region_name="us-west-2",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    answer = braket.get_device(deviceArn=SV1)
    assert answer["deviceName"] == "SV1" and answer["deviceStatus"] == "ONLINE"
    assert {d["deviceArn"] for d in braket.search_devices(filters=[])["devices"]} >= {SV1}
    with pytest.raises(braket.exceptions.ResourceNotFoundException):
        braket.get_device(deviceArn="arn:aws:braket:::device/quantum-simulator/amazon/xx1")


def test_quantum_tasks_run_end_to_end_over_http(endpoint):
    credentials = AwsCredentials(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1",
                                 aws_client_parameters={"endpoint_url": endpoint})
    device = BraketDevice(device_arn=SV1, aws_credentials=credentials)
    thetas = [0.0, 0.7, 2.0]
    results = device.run_batch([PROGRAM] * 3, shots=0, inputs=[{"theta": t} for t in thetas])
    assert [r.values[0] for r in results] == pytest.approx([math.cos(t) for t in thetas])
    assert all(r.task_arn.startswith("arn:aws:braket:us-east-1:123456789012:quantum-task/") for r in results)
    # The default bucket was created in the emulated S3, and the results are there, in Braket's layout.
    s3 = device.backend().client("s3")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="amazon-braket-us-east-1-123456789012")["Contents"]]
    assert sorted(keys) == sorted(f"tasks/{r.task_arn.rsplit('/', 1)[1]}/results.json" for r in results)
    sampled = device.run(PROGRAM, shots=500, inputs={"theta": math.pi})
    assert sampled.measurement_counts == {"1": 500}


ROLE = "arn:aws:iam::123456789012:role/service-role/AmazonBraketJobsExecutionRole"


def test_hybrid_job_on_the_aws_path_over_http(endpoint, monkeypatch):
    """decorator → CreateJob → the job runs (its tasks on the job's device, with priority) → logs and
    metrics from CloudWatch → result from S3 → a second job resumes from the first one's checkpoint."""
    from prefect_braket import hybrid_job
    from prefect_braket import aws_backend as aws_module
    from prefect_braket.aws_backend import AwsBackend
    from prefect_braket.jobs import get_job_device_arn, load_job_checkpoint, log_metric, save_job_checkpoint

    monkeypatch.setattr(aws_module, "IMAGE_PYTHON", f"{sys.version_info.major}.{sys.version_info.minor}")
    session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
    backend = AwsBackend(session=session, region="us-east-1", endpoint_url=endpoint)

    def seed(num_tasks: int = 1, resume_from: str = ""):
        device = BraketDevice(device_arn=get_job_device_arn())
        state = load_job_checkpoint(job_name=resume_from) if resume_from else {"i": 0, "theta": 0.0}
        for i in range(state["i"], num_tasks):
            result = device.run(PROGRAM, shots=0, inputs={"theta": state["theta"]})
            state = {"i": i + 1, "theta": state["theta"] + 0.5, "priority": result.queue_priority}
            log_metric(metric_name="exp_val", value=result.values[0], iteration_number=i)
            save_job_checkpoint(state)
        return state

    first = hybrid_job(device=SV1, backend=backend, role_arn=ROLE)(seed)(num_tasks=3)
    assert first.arn.startswith("arn:aws:braket:us-east-1:123456789012:job/")
    result = first.result(poll_interval_seconds=0.5)
    assert result == {"i": 3, "theta": 1.5, "priority": "Priority"}
    assert first.metrics("iteration_number")["exp_val"] == pytest.approx([1.0, math.cos(0.5), math.cos(1.0)])
    second = hybrid_job(device=SV1, backend=backend, role_arn=ROLE, copy_checkpoints_from_job=first.arn)(seed)(
        num_tasks=5, resume_from=first.name)
    assert second.result(poll_interval_seconds=0.5)["i"] == 5
    assert second.metrics("iteration_number")["iteration_number"] == [3.0, 4.0]  # resumed, not restarted


def _faults(endpoint, **settings):
    import json
    import urllib.request

    request = urllib.request.Request(f"{endpoint}/_endpoint/faults", data=json.dumps(settings).encode(), method="POST")
    urllib.request.urlopen(request).read()
    return json.loads(urllib.request.urlopen(f"{endpoint}/_endpoint/stats").read())


def test_throttling_and_server_errors_are_ridden_out(endpoint):
    from prefect_braket import DeviceUnavailableError

    before = _faults(endpoint, throttle_rate=0.3, error_rate=0.05, seed=5)
    credentials = AwsCredentials(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1",
                                 aws_client_parameters={"endpoint_url": endpoint})
    device = BraketDevice(device_arn=SV1, aws_credentials=credentials)
    thetas = [0.1 * i for i in range(20)]
    try:
        results = device.run_batch([PROGRAM] * 20, shots=0, inputs=[{"theta": t} for t in thetas])
        stats = _faults(endpoint, offline_devices=[SV1])
        assert [r.values[0] for r in results] == pytest.approx([math.cos(t) for t in thetas])
        assert len({r.task_arn for r in results}) == 20  # no task lost, none created twice
        assert stats["throttled"] > before["throttled"] and stats["failed"] > before["failed"]
        with pytest.raises(DeviceUnavailableError, match="OFFLINE") as caught:
            BraketDevice(device_arn=SV1, aws_credentials=credentials).run(PROGRAM, shots=0, inputs={"theta": 0})
        assert caught.value.retryable
    finally:
        _faults(endpoint)
