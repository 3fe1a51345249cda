"""The local Braket endpoint: the AWS path (BraketDevice, the AWS backend, boto3, S3) over real HTTP."""

import math
import sys
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from prefect_aws import AwsCredentials

from helpers.servers import endpoint_control
from helpers.waiting import wait_for
from prefect_braket import BraketDevice

SV1 = "arn:aws:braket:::device/quantum-simulator/amazon/sv1"
PROGRAM = """OPENQASM 3.0;
input float theta;
qubit[1] q;
rx(theta) q[0];
#pragma braket result expectation z(q[0])
"""


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
    from prefect_braket.backends.aws.backend import AwsBackend
    from prefect_braket.jobs import (
        get_job_device_arn,
        load_job_checkpoint,
        log_metric,
        save_job_checkpoint,
    )

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
    endpoint_control(endpoint, "faults", settings)
    return endpoint_control(endpoint, "stats")


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


FORTE = "arn:aws:braket:us-east-1::device/qpu/ionq/Forte-1"


def _window(open_now: bool) -> list[dict]:
    from datetime import datetime, timezone

    if open_now:
        return [{"executionDay": "Everyday", "windowStartHour": "00:00", "windowEndHour": "23:59:59"}]
    hour = datetime.now(timezone.utc).hour
    return [{"executionDay": "Everyday", "windowStartHour": f"{(hour + 2) % 24:02d}:00",
             "windowEndHour": f"{(hour + 3) % 24:02d}:00"}]


def _devices(window_open: bool, **forte) -> list[dict]:
    return [{"arn": SV1, "name": "SV1"},
            {"arn": FORTE, "name": "Forte-1", "provider": "IonQ", "type": "QPU", "qubits": 36,
             "execution_windows": _window(window_open), **forte}]


def test_qpu_queue_with_job_priority_windows_and_search(endpoint, monkeypatch):
    """Normal tasks wait in a closed window; a running job's task goes ahead of them; queue
    positions and sizes read as Braket reports them; SearchQuantumTasks finds the job's task."""
    import json

    from prefect_braket import hybrid_job
    from prefect_braket.backends.aws.backend import AwsBackend

    endpoint_control(endpoint, "devices", _devices(window_open=False))
    braket = boto3.client("braket", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
    backend = AwsBackend(session=session, region="us-east-1", endpoint_url=endpoint)
    bucket = backend.default_bucket("us-east-1")
    action = json.dumps({"braketSchemaHeader": {"name": "braket.ir.openqasm.program", "version": "1"},
                         "source": "OPENQASM 3.0;\nbit[1] b;\nqubit[1] q;\nx q[0];\nb[0] = measure q[0];"})
    try:
        normal = [braket.create_quantum_task(deviceArn=FORTE, action=action, shots=10, outputS3Bucket=bucket,
                                             outputS3KeyPrefix="tasks", clientToken=f"normal-{i}-{id(braket)}")
                  ["quantumTaskArn"] for i in range(3)]

        def on_qpu():
            from prefect_braket.backends.aws.backend import AwsBackend
            from prefect_braket.jobs import get_job_device_arn
            from prefect_braket.quantum.devices import (
                create_quantum_task_request,
                job_priority_token,
            )
            from prefect_braket.quantum.programs import Program

            device = get_job_device_arn()
            backend = AwsBackend()
            request = create_quantum_task_request(
                device, Program("OPENQASM 3.0;\nbit[1] b;\nqubit[1] q;\nx q[0];\nb[0] = measure q[0];"), 10,
                backend.default_bucket(), "jobs/tasks", job_priority_token(device))
            (task, result), = backend.run_quantum_tasks([request], poll_interval_seconds=0.2)
            return {"priority": task["queueInfo"]["queuePriority"], "bits": result["measurements"][0]}

        job = hybrid_job(device=FORTE, backend=backend, role_arn=ROLE)(on_qpu)()
        wait_for(lambda: job.state() == "RUNNING", timeout=60)
        waiting = hybrid_job(device=FORTE, backend=backend, role_arn=ROLE)(on_qpu)()  # one running job per QPU

        def job_task():
            found = braket.search_quantum_tasks(filters=[{"name": "jobArn", "values": [job.arn], "operator": "EQUAL"}])
            return found["quantumTasks"]

        wait_for(job_task, timeout=120)
        (mine,) = job_task()
        info = braket.get_quantum_task(quantumTaskArn=mine["quantumTaskArn"], additionalAttributeNames=["QueueInfo"])
        assert info["status"] == "QUEUED" and info["jobArn"] == job.arn
        assert info["queueInfo"] == {"queue": "QUANTUM_TASKS_QUEUE", "position": "1", "queuePriority": "Priority"}
        last = braket.get_quantum_task(quantumTaskArn=normal[2], additionalAttributeNames=["QueueInfo"])["queueInfo"]
        assert last == {"queue": "QUANTUM_TASKS_QUEUE", "position": "3", "queuePriority": "Normal"}
        queues = {(q["queue"], q.get("queuePriority")): q["queueSize"]
                  for q in braket.get_device(deviceArn=FORTE)["deviceQueueInfo"]}
        assert queues == {("QUANTUM_TASKS_QUEUE", "Normal"): "3", ("QUANTUM_TASKS_QUEUE", "Priority"): "1",
                          ("JOBS_QUEUE", None): "1 (1 prioritized job(s) running)"}
        assert waiting.state() == "QUEUED" and waiting.queue_position().queue_position == "1"  # next
        page = braket.search_quantum_tasks(filters=[{"name": "deviceArn", "values": [FORTE], "operator": "EQUAL"}],
                                           maxResults=2)
        assert len(page["quantumTasks"]) == 2 and page["nextToken"]

        endpoint_control(endpoint, "devices", _devices(window_open=True))  # the window opens
        assert job.result(poll_interval_seconds=0.3) == {"priority": "Priority", "bits": [1]}
        assert waiting.result(poll_interval_seconds=0.3) == {"priority": "Priority", "bits": [1]}
        assert waiting.metadata()["startedAt"] >= job.metadata()["endedAt"]
        wait_for(lambda: all(braket.get_quantum_task(quantumTaskArn=a)["status"] == "COMPLETED" for a in normal),
                 timeout=60)
        ended = {a: braket.get_quantum_task(quantumTaskArn=a)["endedAt"] for a in normal + [mine["quantumTaskArn"]]}
        assert ended[mine["quantumTaskArn"]] < min(ended[a] for a in normal)  # ahead of tasks queued before it
        done = braket.search_jobs(filters=[{"name": "status", "values": ["COMPLETED"], "operator": "EQUAL"}])
        assert job.arn in {j["jobArn"] for j in done["jobs"]}
        # An ended task cannot be cancelled (ConflictException); the backend reports its status instead.
        with pytest.raises(braket.exceptions.ConflictException):
            braket.cancel_quantum_task(quantumTaskArn=normal[0], clientToken="c")
        assert backend.cancel_quantum_task(normal[0]) == "COMPLETED"
    finally:
        endpoint_control(endpoint, "devices", _devices(window_open=True))


def test_braket_error_codes(endpoint):
    endpoint_control(endpoint, "devices", _devices(window_open=True, status="RETIRED")
             + [{"arn": "arn:aws:braket:eu-north-1::device/qpu/iqm/Garnet", "name": "Garnet", "type": "QPU"}])
    braket = boto3.client("braket", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    request = dict(action='{"source": "OPENQASM 3.0;"}', shots=10, outputS3Bucket="bucket", outputS3KeyPrefix="p")
    try:
        with pytest.raises(braket.exceptions.DeviceRetiredException):
            braket.create_quantum_task(deviceArn=FORTE, **request)
        # A QPU is served in its own region only; simulators in every region.
        with pytest.raises(braket.exceptions.ResourceNotFoundException, match="eu-north-1"):
            braket.get_device(deviceArn="arn:aws:braket:eu-north-1::device/qpu/iqm/Garnet")
        with pytest.raises(braket.exceptions.ValidationException, match="eu-north-1"):
            braket.create_quantum_task(deviceArn="arn:aws:braket:eu-north-1::device/qpu/iqm/Garnet", **request)
        assert {d["deviceArn"] for d in braket.search_devices(filters=[])["devices"]} == {SV1, FORTE}
        with pytest.raises(braket.exceptions.ValidationException, match="Cannot filter"):
            braket.search_jobs(filters=[{"name": "colour", "values": ["x"], "operator": "EQUAL"}])
        _faults(endpoint, throttle_rate=1.0)
        no_retries = boto3.client("braket", endpoint_url=endpoint, region_name="us-east-1",
                                  aws_access_key_id="testing", aws_secret_access_key="testing",
                                  config=Config(retries={"max_attempts": 1}))
        with pytest.raises(no_retries.exceptions.ThrottlingException) as caught:
            no_retries.get_device(deviceArn=SV1)
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429
    finally:
        _faults(endpoint)
        endpoint_control(endpoint, "devices", _devices(window_open=True))


def test_missing_result_objects_are_run_again(endpoint):
    credentials = AwsCredentials(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1",
                                 aws_client_parameters={"endpoint_url": endpoint})
    device = BraketDevice(device_arn=SV1, aws_credentials=credentials)
    before = _faults(endpoint, missing_results=3)
    try:
        thetas = [0.2 * i for i in range(12)]
        results = device.run_batch([PROGRAM] * 12, shots=0, inputs=[{"theta": t} for t in thetas], client_token="m")
        stats = endpoint_control(endpoint, "stats")
    finally:
        _faults(endpoint)
    assert [r.values[0] for r in results] == pytest.approx([math.cos(t) for t in thetas])
    assert stats["results_dropped"] - before["results_dropped"] == 3
    assert stats["tasks_created"] - before["tasks_created"] == 12 + 3  # each lost result run once more


def test_the_command_serves_the_devices_of_a_devices_file(tmp_path):
    import json
    import subprocess

    from helpers.servers import start_on_a_free_port

    devices = tmp_path / "devices.json"
    cepheus = "arn:aws:braket:us-west-1::device/qpu/rigetti/Cepheus-1-108Q"
    devices.write_text(json.dumps([
        {"arn": SV1, "name": "SV1"},
        {"arn": cepheus, "name": "Cepheus-1-108Q", "provider": "Rigetti", "type": "QPU", "qubits": 108,
         "status": "OFFLINE", "execution_windows": [{"executionDay": "Weekdays", "windowStartHour": "15:00",
                                                    "windowEndHour": "19:00"}]},
    ]))
    command = Path(sys.executable).parent / "prefect-braket-endpoint"  # the console script, beside the interpreter
    server, port = start_on_a_free_port(
        lambda port: subprocess.Popen([str(command), "--port", str(port), "--devices", str(devices)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        lambda port: f"http://127.0.0.1:{port}/moto-api/", timeout=120)
    url = f"http://127.0.0.1:{port}"
    try:
        credentials = AwsCredentials(aws_access_key_id="testing", aws_secret_access_key="testing",
                                     region_name="us-west-1", aws_client_parameters={"endpoint_url": url})
        device = BraketDevice(device_arn=cepheus, aws_credentials=credentials)
        description = device.description()
        assert (description.name, description.provider, description.status, description.qubit_count) == (
            "Cepheus-1-108Q", "Rigetti", "OFFLINE", 108)
        assert [(w.day, w.start, w.end) for w in description.execution_windows] == [("Weekdays", "15:00", "19:00")]
        braket = device.braket_client()
        assert {d["deviceArn"] for d in braket.search_devices(filters=[])["devices"]} == {SV1, cepheus}
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_device_set_changes_fail_orphaned_tasks_and_bad_windows_are_refused(tmp_path):
    """In process, without HTTP: the device set's rules, before anything reaches a simulator."""
    import json

    from prefect_braket.backends.local.engine import LocalEngine
    from prefect_braket.endpoint import BraketApi, DeviceModel

    with pytest.raises(ValueError, match="status 'BROKEN' is not one of ONLINE, OFFLINE, RETIRED"):
        DeviceModel(SV1, "SV1", status="BROKEN")
    with pytest.raises(ValueError, match="AWS device ARNs, not local ones"):
        DeviceModel("local:braket/braket_sv", "local")
    with pytest.raises(ValueError, match="executionDay"):
        DeviceModel(FORTE, "Forte-1", type="QPU", execution_windows=[{"executionDay": "Weekday",
                                                                      "windowStartHour": "00:00",
                                                                      "windowEndHour": "01:00"}])
    api = BraketApi(lambda service: None, LocalEngine(tmp_path), [DeviceModel(**_devices(window_open=False)[1])])
    action = json.dumps({"source": "OPENQASM 3.0;\nbit[1] b;\nqubit[1] q;\nb[0] = measure q[0];"})
    created = api.create_quantum_task({"deviceArn": FORTE, "action": action, "shots": 10, "outputS3Bucket": "bucket",
                                       "outputS3KeyPrefix": "tasks"}, "us-east-1", {})
    task = api.get_quantum_task(created["quantumTaskArn"], {}, "us-east-1", {"additionalAttributeNames": ["QueueInfo"]})
    assert task["status"] == "QUEUED" and task["queueInfo"]["position"] == "1"
    api.set_devices([DeviceModel(SV1, "SV1")])  # the QPU goes: its queued task cannot run any more
    task = api.get_quantum_task(created["quantumTaskArn"], {}, "us-east-1", {})
    assert task["status"] == "FAILED" and "removed" in task["failureReason"]
    wait_for(lambda: api._workers[FORTE] == 0, timeout=5)  # its worker retired


def test_the_endpoint_says_what_to_install_without_moto(monkeypatch):
    from prefect_braket.endpoint import Endpoint

    monkeypatch.setitem(sys.modules, "moto.moto_server.werkzeug_app", None)  # as if moto were not installed
    with pytest.raises(ImportError, match=r"pip install 'prefect-braket\[endpoint\]'"):
        Endpoint("http://127.0.0.1:1")
