"""The local endpoint as Braket's SDK sees it: devices, quantum tasks, batches, PennyLane and jobs
through the SDK's own clients, and its errors answered as botocore's Braket model says (status
codes and error codes)."""

import math
import time
import uuid
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from botocore.exceptions import ClientError

from helpers.modules import import_source
from helpers.servers import endpoint_control

SV1 = "arn:aws:braket:::device/quantum-simulator/amazon/sv1"
DM1 = "arn:aws:braket:::device/quantum-simulator/amazon/dm1"
FORTE = "arn:aws:braket:us-east-1::device/qpu/ionq/Forte-1"
GARNET = "arn:aws:braket:eu-north-1::device/qpu/iqm/Garnet"
CLOSED_QPU = "arn:aws:braket:us-east-1::device/qpu/rigetti/Ankaa-3"  # its window is days away: tasks wait
RETIRED_QPU = "arn:aws:braket:us-east-1::device/qpu/ionq/Aria-1"
ROLE = "arn:aws:iam::123456789012:role/service-role/AmazonBraketJobsExecutionRole"
IMAGE = "292282985366.dkr.ecr.us-east-1.amazonaws.com/amazon-braket-base-jobs:latest"
FAST = {"poll_timeout_seconds": 120, "poll_interval_seconds": 0.1}


@pytest.fixture(scope="module")
def devices(braket_endpoint):
    """The endpoint's devices, with a QPU whose window is closed and a retired one added."""
    served = endpoint_control(braket_endpoint, "devices")
    in_three_days = (datetime.now(timezone.utc) + timedelta(days=3)).strftime("%A")
    extra = [{"arn": CLOSED_QPU, "name": "Ankaa-3", "provider": "Rigetti", "type": "QPU", "qubits": 84,
              "execution_windows": [{"executionDay": in_three_days, "windowStartHour": "00:00",
                                     "windowEndHour": "01:00"}]},
             {"arn": RETIRED_QPU, "name": "Aria-1", "provider": "IonQ", "type": "QPU", "qubits": 25,
              "status": "RETIRED"}]
    endpoint_control(braket_endpoint, "devices", served + extra)
    yield braket_endpoint
    endpoint_control(braket_endpoint, "devices", served)


def _error(caught: pytest.ExceptionInfo) -> tuple[int, str]:
    """A botocore error's HTTP status and Braket error code."""
    response = caught.value.response
    return response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"]


def _bell():
    from braket.circuits import Circuit

    return Circuit().h(0).cnot(0, 1)


# -- devices ----------------------------------------------------------------------------------------


def test_devices_read_as_the_sdk_reads_them(devices):
    from braket.aws import AwsDevice, AwsDeviceType
    from braket.device_schema import DeviceActionType
    from braket.device_schema.simulators import GateModelSimulatorDeviceCapabilities

    sv1 = AwsDevice(SV1)
    assert (sv1.name, sv1.status, sv1.type, sv1.provider_name) == ("SV1", "ONLINE", AwsDeviceType.SIMULATOR,
                                                                   "Amazon Braket")
    assert isinstance(sv1.properties, GateModelSimulatorDeviceCapabilities)
    assert sv1.properties.service.shotsRange == (0, 100000)
    # What it runs, and only that: PennyLane's plugin sends program sets to a device that lists them.
    assert set(sv1.properties.action) == {DeviceActionType.OPENQASM}
    assert sv1.is_available
    depth = sv1.queue_depth()
    assert depth.quantum_tasks == {"Normal": "0", "Priority": "0"} and depth.jobs == "0"

    garnet = AwsDevice(GARNET)  # the SDK moves to the QPU's region, eu-north-1
    assert (garnet.name, garnet.type, garnet.properties.paradigm.qubitCount) == ("Garnet", AwsDeviceType.QPU, 20)
    assert garnet.aws_session.region == "eu-north-1"

    assert [d.name for d in AwsDevice.get_devices()] == ["Ankaa-3", "DM1", "Forte-1", "Garnet", "SV1"]
    assert [d.name for d in AwsDevice.get_devices(statuses=["RETIRED"])] == ["Aria-1"]  # shown when asked for
    assert [d.name for d in AwsDevice.get_devices(types=[AwsDeviceType.SIMULATOR])] == ["DM1", "SV1"]
    assert [d.name for d in AwsDevice.get_devices(provider_names=["IonQ"], statuses=["ONLINE"])] == ["Forte-1"]


# -- quantum tasks ------------------------------------------------------------------------------------


def test_exact_results_with_shots_0(braket_endpoint):
    from braket.aws import AwsDevice
    from braket.circuits import Observable, ResultType

    circuit = (_bell().expectation(Observable.Z() @ Observable.Z(), target=[0, 1]).variance(Observable.X(), target=0)
               .probability(target=[0, 1]).amplitude(["00", "11"]).state_vector())
    result = AwsDevice(SV1).run(circuit, shots=0, **FAST).result()
    expectation, variance, probability, amplitude, state = result.values
    assert expectation == pytest.approx(1) and variance == pytest.approx(1)
    assert probability == pytest.approx([0.5, 0, 0, 0.5])
    assert amplitude == pytest.approx({"00": 1 / math.sqrt(2), "11": 1 / math.sqrt(2)})
    assert state == pytest.approx(np.array([1, 0, 0, 1]) / math.sqrt(2))
    assert result.get_value_by_result_type(ResultType.Probability(target=[0, 1])) is probability
    assert result.measurements is None and result.task_metadata.shots == 0


def test_sampled_results_are_computed_from_the_bits_the_task_measured(braket_endpoint):
    from braket.aws import AwsDevice
    from braket.circuits import Circuit, Observable

    device = AwsDevice(SV1)
    bell = _bell().expectation(Observable.Z() @ Observable.Z(), target=[0, 1]).probability(target=[0, 1]).sample(
        Observable.Z(), target=0)
    result = device.run(bell, shots=400, **FAST).result()
    expectation, probability, samples = result.values
    counts = result.measurement_counts
    assert set(counts) == {"00", "11"} and sum(counts.values()) == 400
    assert expectation == 1.0  # Z⊗Z is +1 on every shot of a Bell pair
    assert probability.tolist() == [counts["00"] / 400, 0, 0, counts["11"] / 400]
    assert list(samples) == [1 - 2 * bits[0] for bits in result.measurements]
    # The bits come after the basis change for X: |+> reads +1 on every shot.
    plus = Circuit().h(0).expectation(Observable.X(), target=0).variance(Observable.X(), target=0)
    assert device.run(plus, shots=200, **FAST).result().values == [1.0, 0.0]


def test_a_batch_with_free_parameters(braket_endpoint):
    from braket.aws import AwsDevice
    from braket.circuits import Circuit, FreeParameter, Observable

    circuit = Circuit().rx(0, FreeParameter("theta")).expectation(Observable.Z(), target=0)
    thetas = [0.0, 0.7, 2.0]
    batch = AwsDevice(SV1).run_batch([circuit] * 3, shots=0, inputs=[{"theta": t} for t in thetas], **FAST)
    assert [r.values[0] for r in batch.results()] == pytest.approx([math.cos(t) for t in thetas])
    assert batch.unsuccessful == set() and len({task.id for task in batch.tasks}) == 3


def test_a_qpu_and_the_density_matrix_simulator_with_noise(braket_endpoint):
    from braket.aws import AwsDevice
    from braket.circuits import Circuit

    counts = AwsDevice(FORTE).run(Circuit().x(0).cnot(0, 1), shots=50, **FAST).result().measurement_counts
    assert counts == {"11": 50}
    noisy = Circuit().x(0).bit_flip(0, 0.25).probability(target=0)
    assert AwsDevice(DM1).run(noisy, shots=0, **FAST).result().values[0] == pytest.approx([0.25, 0.75])


def test_a_task_handle_from_its_arn(braket_endpoint):
    from braket.aws import AwsDevice, AwsQuantumTask
    from braket.aws.queue_information import QueueType

    task = AwsDevice(SV1).run(_bell(), shots=20, **FAST)
    counts = task.result().measurement_counts
    again = AwsQuantumTask(task.id, **FAST)
    assert again.state() == "COMPLETED" and again.result().measurement_counts == counts
    position = again.queue_position()
    assert (position.queue_type, position.queue_position) == (QueueType.NORMAL, None)
    assert position.message == "Task is in COMPLETED status. AmazonBraket does not show queue position for this status."
    with pytest.raises(ClientError) as caught:
        again.cancel()
    assert _error(caught) == (409, "ConflictException")


def test_a_queued_task_shows_its_position_and_is_cancelled(devices):
    from braket.aws import AwsDevice
    from braket.aws.queue_information import QueueType

    device = AwsDevice(CLOSED_QPU)
    assert not device.is_available  # outside its execution windows
    task = device.run(_bell(), shots=10, **FAST)
    position = task.queue_position()
    assert (task.state(), position.queue_type, position.queue_position) == ("QUEUED", QueueType.NORMAL, "1")
    assert device.queue_depth().quantum_tasks[QueueType.NORMAL] == "1"
    task.cancel()
    assert task.state() == "CANCELLED" and task.result() is None
    assert device.queue_depth().quantum_tasks[QueueType.NORMAL] == "0"


def test_a_task_that_fails_as_it_runs(braket_endpoint):
    from braket.aws import AwsDevice
    from braket.ir.openqasm import Program

    # A state vector cannot be sampled: Braket accepts the program, and the task fails.
    program = Program(source="OPENQASM 3.0;\nqubit[1] q;\nh q[0];\n#pragma braket result state_vector\n")
    task = AwsDevice(SV1).run(program, shots=10, **FAST)
    assert task.result() is None and task.state() == "FAILED"
    assert "shots>0" in task.metadata()["failureReason"]


# -- errors, as botocore's Braket model says -----------------------------------------------------------


def test_unknown_devices_and_tasks(braket_endpoint):
    from braket.aws import AwsDevice, AwsQuantumTask, AwsSession

    unknown = "arn:aws:braket:::device/quantum-simulator/amazon/xx1"
    with pytest.raises(ValueError, match="not found"):  # the SDK's reading of ResourceNotFoundException
        AwsDevice(unknown)
    with pytest.raises(ValueError, match="not found"):  # a QPU is served only in its own region
        AwsDevice("arn:aws:braket:us-west-2::device/qpu/ionq/Forte-1")
    session = AwsSession()
    with pytest.raises(ClientError) as caught:
        session.get_device(unknown)
    assert _error(caught) == (404, "ResourceNotFoundException")
    with pytest.raises(ClientError) as caught:
        AwsQuantumTask(f"arn:aws:braket:us-east-1:123456789012:quantum-task/{uuid.uuid4()}").state()
    assert _error(caught) == (404, "ResourceNotFoundException")
    with pytest.raises(ClientError) as caught:  # CreateQuantumTask has no ResourceNotFoundException
        AwsQuantumTask.create(session, unknown, _bell(), (session.default_bucket(), "tasks"), 10)
    assert _error(caught) == (400, "ValidationException")


def test_created_tasks_answer_201_and_bad_requests_400(braket_endpoint):
    import json

    from braket.aws import AwsQuantumTask, AwsSession
    from braket.ir.openqasm import Program

    session = AwsSession()
    statuses = []
    session.braket_client.meta.events.register(
        "after-call.braket.CreateQuantumTask", lambda http_response, **kw: statuses.append(http_response.status_code))
    destination = (session.default_bucket(), "tasks")
    AwsQuantumTask.create(session, SV1, _bell(), destination, 10)
    assert statuses == [201]
    for program, shots, message in ((_bell(), 10**6, "outside SV1's range"),
                                    (Program(source="OPENQASM 3.0;\nqubit[1] q;\nh q[0"), 10, "line 3")):
        with pytest.raises(ClientError, match=message) as caught:
            AwsQuantumTask.create(session, SV1, program, destination, shots)
        assert _error(caught) == (400, "ValidationException")
    jaqcd = {"braketSchemaHeader": {"name": "braket.ir.jaqcd.program", "version": "1"},
             "instructions": [{"type": "h", "target": 0}]}
    with pytest.raises(ClientError, match="send an OpenQASM program") as caught:
        session.braket_client.create_quantum_task(deviceArn=SV1, action=json.dumps(jaqcd), shots=10,
                                                  outputS3Bucket=destination[0], outputS3KeyPrefix="tasks",
                                                  clientToken=str(uuid.uuid4()))
    assert _error(caught) == (400, "ValidationException")


def test_unavailable_devices(devices):
    from braket.aws import AwsDevice

    retired = AwsDevice(RETIRED_QPU)
    assert retired.status == "RETIRED" and not retired.is_available
    with pytest.raises(ClientError) as caught:
        retired.run(_bell(), shots=10)
    assert _error(caught) == (410, "DeviceRetiredException")
    endpoint_control(devices, "faults", {"offline_devices": [SV1]})
    try:
        sv1 = AwsDevice(SV1)
        assert sv1.status == "OFFLINE" and not sv1.is_available
        with pytest.raises(ClientError) as caught:
            sv1.run(_bell(), shots=10)
        assert _error(caught) == (424, "DeviceOfflineException")
    finally:
        endpoint_control(devices, "faults", {})


def test_throttling_and_service_faults(braket_endpoint, monkeypatch):
    from braket.aws import AwsDevice

    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # the answer itself, not botocore riding it out
    try:
        for faults, answer in (({"throttle_rate": 1.0}, (429, "ThrottlingException")),
                               ({"error_rate": 1.0}, (500, "InternalServiceException"))):
            endpoint_control(braket_endpoint, "faults", faults)
            with pytest.raises(ClientError) as caught:
                AwsDevice(SV1)
            assert _error(caught) == answer
    finally:
        endpoint_control(braket_endpoint, "faults", {})


# -- PennyLane, through Braket's plugin ------------------------------------------------------------------


def test_pennylane_through_braket_s_plugin(braket_endpoint):
    import pennylane as qml

    device = qml.device("braket.aws.qubit", device_arn=SV1, wires=2, **FAST)

    @qml.qnode(device)
    def circuit(theta):
        qml.RX(theta, wires=0)
        qml.CNOT(wires=[0, 1])
        return qml.expval(qml.PauliZ(1)), qml.probs(wires=[0])

    expectation, probabilities = circuit(0.7)
    assert expectation == pytest.approx(math.cos(0.7))
    assert probabilities == pytest.approx([math.cos(0.35) ** 2, math.sin(0.35) ** 2])
    sampled, _ = qml.set_shots(circuit, shots=2000)(0.7)
    assert sampled == pytest.approx(math.cos(0.7), abs=0.1)


# -- jobs (last: they run on the embedded engine behind the endpoint) -------------------------------------

JOB_SOURCE = '''
from braket.jobs import get_hyperparameters, save_job_result
from braket.jobs.metrics import log_metric


def main():
    steps = int(get_hyperparameters()["steps"])
    for i in range(steps):
        log_metric(metric_name="loss", value=1.0 / (i + 1), iteration_number=i)
    print("done{blank}")
    save_job_result({{"steps": steps}})
'''


def _create_job(tmp_path, blank_line: bool = False):
    from braket.aws import AwsQuantumJob

    source = tmp_path / "algorithm.py"
    source.write_text(JOB_SOURCE.format(blank="\\n" if blank_line else ""))
    return AwsQuantumJob.create(device=SV1, source_module=str(source), entry_point="algorithm:main",
                                image_uri=IMAGE, role_arn=ROLE, hyperparameters={"steps": 3})


def test_a_job_created_with_aws_quantum_job(braket_endpoint, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the SDK's result() downloads into the working directory
    job = _create_job(tmp_path)
    assert job.arn.startswith("arn:aws:braket:us-east-1:123456789012:job/")
    assert job.result(poll_interval_seconds=0.2) == {"steps": 3}
    assert job.state() == "COMPLETED"
    assert job.metrics()["loss"] == pytest.approx([1.0, 0.5, 1 / 3])
    assert job.queue_position().queue_position is None
    job.logs()
    assert "done" in capsys.readouterr().out


def test_a_job_whose_log_has_an_empty_line(braket_endpoint, tmp_path, monkeypatch, capsys):
    """CloudWatch refuses empty messages: the endpoint keeps the blank line, and GetJob keeps working."""
    monkeypatch.chdir(tmp_path)
    job = _create_job(tmp_path, blank_line=True)
    assert job.result(poll_interval_seconds=0.2) == {"steps": 3}
    assert job.state() == "COMPLETED"
    job.logs()
    printed = capsys.readouterr().out.splitlines()
    assert printed[printed.index("done") + 1].strip() == ""


# The SDK's own decorator, unpatched: its Python check reads the base image's tags from the
# endpoint's ECR. The function lives in a module of its own, registered to travel by value
# (`include_modules`), as a user's script would.
SDK_JOB_SOURCE = '''
import time

from braket.jobs import get_job_name, load_job_checkpoint, save_job_checkpoint, save_job_result
from braket.jobs.metrics import log_metric


def train(steps, resume_from=None, hold_seconds=0):
    done = load_job_checkpoint(job_name=resume_from)["done"] if resume_from else 0
    for step in range(done, done + steps):
        log_metric(metric_name="step", value=step, iteration_number=step)
        save_job_checkpoint({"done": step + 1})
    time.sleep(hold_seconds)
    save_job_result({"done": done + steps, "name": get_job_name()})
    return done + steps
'''


def test_the_sdks_own_hybrid_job_with_checkpoints_results_and_downloads(braket_endpoint, tmp_path, monkeypatch):
    from braket.jobs import hybrid_job as braket_hybrid_job

    monkeypatch.chdir(tmp_path)
    module = import_source(SDK_JOB_SOURCE, "sdk_job", tmp_path, monkeypatch)

    def submit(**options):
        return braket_hybrid_job(device=SV1, role_arn=ROLE, include_modules=module.__name__, **options)(module.train)

    first = submit(job_name=f"first-{uuid.uuid4().hex[:8]}")(steps=2)
    # What the job saved, and the SDK's decorator adds the function's return value.
    assert first.result(poll_interval_seconds=0.2) == {"done": 2, "name": first.name, "result": 2}
    assert first.state() == "COMPLETED"
    assert first.metrics()["step"] == [0.0, 1.0]
    first.download_result(extract_to=str(tmp_path / "downloaded"), poll_interval_seconds=0.2)
    assert (tmp_path / "downloaded" / first.name / "results.json").is_file()

    # A second job starts from the first one's checkpoints (copied by the SDK in S3) and goes on.
    second = submit(copy_checkpoints_from_job=first.arn)(steps=3, resume_from=first.name)
    assert second.result(poll_interval_seconds=0.2) == {"done": 5, "name": second.name, "result": 5}
    assert second.metrics()["step"] == [2.0, 3.0, 4.0]


def test_the_sdks_job_is_cancelled(braket_endpoint, tmp_path, monkeypatch):
    from braket.jobs import hybrid_job as braket_hybrid_job

    monkeypatch.chdir(tmp_path)
    module = import_source(SDK_JOB_SOURCE, "sdk_job", tmp_path, monkeypatch)
    job = braket_hybrid_job(device=SV1, role_arn=ROLE, include_modules=module.__name__)(module.train)(
        steps=1, hold_seconds=600)
    deadline = time.monotonic() + 120
    while job.state(use_cached_value=False) != "RUNNING":
        assert time.monotonic() < deadline, f"the job never started: {job.state()}"
        time.sleep(0.2)
    assert job.cancel() in ("CANCELLING", "CANCELLED")
    while job.state(use_cached_value=False) != "CANCELLED":
        assert time.monotonic() < deadline, f"the job was not cancelled: {job.state()}"
        time.sleep(0.2)
    assert job.metadata(use_cached_value=False)["status"] == "CANCELLED"
