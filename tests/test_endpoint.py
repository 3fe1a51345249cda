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
