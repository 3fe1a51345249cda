"""Devices: local simulators against analytic values; AWS device descriptions through botocore's Stubber."""

import json
import math
import warnings
from collections import Counter
from datetime import datetime, timezone

import cloudpickle
import numpy as np
import pytest
from botocore.stub import Stubber
from braket.schema_common import BraketSchemaBase
from prefect_aws import AwsCredentials

from helpers.paths import DATA
from helpers.programs import ENTANGLED, ROTATION
from prefect_braket import (
    BraketDevice,
    Budget,
    BudgetExceededError,
    DeviceCapabilityError,
    DeviceUnavailableError,
    PriorityWarning,
    to_program,
)
from prefect_braket.jobs.budget import SpendingLedger
from prefect_braket.quantum.cost import PriceTable, UnknownPriceError
from prefect_braket.quantum.devices import (
    QueueSize,
    create_quantum_task_request,
    job_priority_token,
)
from prefect_braket.quantum.results import TaskResult

PAYLOADS = json.loads((DATA / "get_device.json").read_text())
FORTE = PAYLOADS["forte"]["deviceArn"]


def aws_device(name, **fields):
    """A device block whose Braket client answers GetDevice with a payload from tests/data."""
    credentials = AwsCredentials(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-west-2")
    device = BraketDevice(device_arn=PAYLOADS[name]["deviceArn"], aws_credentials=credentials, **fields)
    stubber = Stubber(device.braket_client())
    stubber.add_response("get_device", PAYLOADS[name], {"deviceArn": device.device_arn})
    stubber.activate()
    return device, stubber


def test_payloads_are_braket_device_capabilities():
    for payload in PAYLOADS.values():
        BraketSchemaBase.parse_raw_schema(payload["deviceCapabilities"])


# -- local simulators against analytic values ------------------------------------------------------



@pytest.mark.parametrize("arn", ["local:braket/braket_sv", "local:braket/braket_dm"])
@pytest.mark.parametrize("theta", [0.0, 0.7, math.pi / 2, 2.5])
def test_exact_values_match_analytic(arn, theta):
    device = BraketDevice(device_arn=arn)
    z, y, probabilities = device.run(ROTATION, shots=0, inputs={"theta": theta}).values
    assert z == pytest.approx(math.cos(theta))
    assert y == pytest.approx(-math.sin(theta))
    assert probabilities == pytest.approx([math.cos(theta / 2) ** 2, math.sin(theta / 2) ** 2])
    zz, z1, joint = device.run(ENTANGLED, shots=0, inputs={"theta": theta}).values
    assert zz == pytest.approx(1.0)
    assert z1 == pytest.approx(math.cos(theta))
    assert joint == pytest.approx([math.cos(theta / 2) ** 2, 0, 0, math.sin(theta / 2) ** 2])


def test_sampled_values_are_computed_from_bits_like_braket():
    device = BraketDevice()
    theta, shots = 1.1, 4000
    result = device.run(ENTANGLED, shots=shots, inputs={"theta": theta})
    zz, z1, joint = result.values
    sigma = math.sqrt((1 - math.cos(theta) ** 2) / shots)
    assert zz == 1.0  # the two qubits always agree
    assert abs(z1 - math.cos(theta)) < 5 * sigma
    assert set(result.measurement_counts) <= {"00", "11"}
    assert sum(result.measurement_counts.values()) == shots
    assert result.measurements.shape == (shots, 2) and result.measurements.dtype == np.int8
    assert result.measurement_probabilities["00"] == pytest.approx(joint[0])
    assert result.measured_qubits == [0, 1]
    assert result.task_arn.startswith("local:task/")
    assert result.execution_duration_ms > 0
    rows = ["".join(map(str, row)) for row in result.measurements.tolist()]
    assert list(result.measurement_counts.items()) == list(Counter(rows).items())  # in the order rows first came


def test_counts_are_of_every_distinct_row_in_the_order_they_first_came():
    bits = np.array([[1, 0, 1], [0, 0, 0], [1, 0, 1], [0, 1, 1], [0, 0, 0], [1, 0, 1]], dtype=np.int8)
    result = TaskResult.from_gate_model({"measurements": bits.tolist(), "measuredQubits": [0, 1, 2],
                                         "taskMetadata": {"shots": 6}}, "local:task/x", "local:braket/braket_sv")
    assert list(result.measurement_counts.items()) == [("101", 3), ("000", 2), ("011", 1)]
    assert result.measurement_probabilities == {"101": 0.5, "000": 2 / 6, "011": 1 / 6}


def test_seed_program_x_expectation_with_shots():
    prepared = ENTANGLED.replace("ry(theta)", "rx(theta)").split("#pragma")[0]
    seed = prepared + "#pragma braket result expectation x(q[0])\n"
    values = [BraketDevice().run(seed, shots=1000, inputs={"theta": t}).values[0] for t in (0.0, 1.0)]
    assert all(abs(v) < 0.2 for v in values)  # <X0> is 0 for every theta


def test_programs_are_checked_before_running():
    device = BraketDevice(device_arn="local:braket/braket_dm")
    with pytest.raises(ValueError, match=r"input\(s\) \['theta'\] have no value: pass inputs=\{'theta': ...\}"):
        device.run(ROTATION)
    with pytest.raises(ValueError, match=r"\['phi'\] are not declared"):
        device.run(ROTATION, inputs={"theta": 1, "phi": 2})
    with pytest.raises(DeviceCapabilityError, match="uses 20 qubits; braket_dm has 13"):
        device.run("OPENQASM 3.0;\nqubit[20] q;\nh q[0];\n")
    with pytest.raises(ValueError, match="OpenQASM 3 source"):
        device.run("h q[0];")
    with pytest.raises(ValueError, match="not one Braket knows"):
        BraketDevice(device_arn="local:braket/braket_xx")


class FakeCircuit:
    """What a Braket SDK Circuit offers: `to_ir(ir_type="OPENQASM")` with `.source` and `.inputs`."""

    def to_ir(self, ir_type):
        assert ir_type == "OPENQASM"
        return type("IR", (), {"source": ROTATION, "inputs": {"theta": 0.0}})()


def test_sdk_circuits_and_canonical_keys():
    assert BraketDevice().run(FakeCircuit(), shots=0).values[0] == pytest.approx(1.0)
    spaced = ROTATION.replace("\n", "\r\n\n  ")
    assert (to_program(spaced, {"theta": np.float64(0.5)}).cache_key()
            == to_program(ROTATION, {"theta": 0.5}).cache_key())
    assert to_program(ROTATION, {"theta": 0.5}).cache_key() != to_program(ROTATION, {"theta": 0.6}).cache_key()


# -- AWS device descriptions -----------------------------------------------------------------------


def test_status_queue_depth_and_region_from_get_device():
    device, stubber = aws_device("forte")
    assert device.region == "us-east-1"
    assert device.braket_client().meta.region_name == "us-east-1"  # the ARN's, not the credentials' us-west-2
    description = device.description()
    assert description.status == "ONLINE" and description.qubit_count == 36
    assert description.shots_range == (1, 5000)
    depth = description.queue_depth
    assert (depth.normal_tasks.count, depth.priority_tasks.count) == (19, 3)
    assert depth.jobs.count == 0 and depth.jobs.running == 3
    stubber.assert_no_pending_responses()


def test_queue_sizes_over_the_reported_limit():
    device, _ = aws_device("garnet")
    depth = device.queue_depth()
    assert depth.normal_tasks == QueueSize(">4000", 4001, at_least=True)
    assert depth.jobs.at_least and depth.jobs.count == 1001
    assert device.region == "eu-north-1"


def test_region_less_simulator_uses_the_credentials_region():
    device, _ = aws_device("sv1")
    assert device.region == "us-west-2"
    assert device.status() == "ONLINE"


def test_offline_and_retired_devices_are_refused_before_paying():
    offline, stubber = aws_device("garnet")
    with pytest.raises(DeviceUnavailableError, match="Garnet is OFFLINE.*Wait until it is ONLINE") as caught:
        offline.run("OPENQASM 3.0;\nqubit[1] q;\nh q[0];\n", shots=10)
    assert caught.value.retryable
    stubber.assert_no_pending_responses()  # one GetDevice, no CreateQuantumTask
    retired, _ = aws_device("aria")
    with pytest.raises(DeviceUnavailableError, match="RETIRED.*choose another device") as caught:
        retired.run("OPENQASM 3.0;\nqubit[1] q;\nh q[0];\n", shots=10)
    assert not caught.value.retryable


def test_shots_qubits_and_result_types_are_validated_against_the_device():
    device, _ = aws_device("forte")
    program = "OPENQASM 3.0;\nqubit[2] q;\nh q[0];\n#pragma braket result expectation z(q[0])\n"
    refusal = "0 shots is outside what Forte-1 takes \\(1 to 5000\\).*at least 1"
    with pytest.raises(DeviceCapabilityError, match=refusal):
        device.run(program, shots=0)
    with pytest.raises(DeviceCapabilityError, match="6000 shots"):
        device.run(program, shots=6000)
    with pytest.raises(DeviceCapabilityError, match="uses 40 qubits; Forte-1 has 36"):
        device.run("OPENQASM 3.0;\nqubit[40] q;\n", shots=100)
    with pytest.raises(DeviceCapabilityError, match="does not support the statevector result type"):
        device.run("OPENQASM 3.0;\nqubit[1] q;\n#pragma braket result state_vector\n", shots=100)


def test_execution_windows():
    device, _ = aws_device("forte")  # weekdays 13:00 to 02:00 UTC, crossing midnight
    wednesday_noon = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)
    assert not device.window_open(wednesday_noon)
    assert device.next_window_opens(wednesday_noon) == datetime(2026, 11, 25, 13, 0, tzinfo=timezone.utc)
    assert device.window_open(datetime(2026, 11, 26, 1, 30, tzinfo=timezone.utc))  # Thursday, before 02:00
    assert device.window_open(datetime(2026, 11, 28, 1, 30, tzinfo=timezone.utc))  # Saturday: Friday's window
    assert not device.window_open(datetime(2026, 11, 28, 13, 30, tzinfo=timezone.utc))  # Saturday afternoon
    assert device.next_window_opens(datetime(2026, 11, 28, 13, 30, tzinfo=timezone.utc)) == datetime(
        2026, 11, 30, 13, 0, tzinfo=timezone.utc)  # Monday
    assert BraketDevice().window_open() and BraketDevice().queue_depth().normal_tasks.count == 0


# -- priority and cost -----------------------------------------------------------------------------


def test_job_token_goes_only_to_the_jobs_device(monkeypatch):
    monkeypatch.setenv("AMZN_BRAKET_JOB_TOKEN", "token-123")
    monkeypatch.setenv("AMZN_BRAKET_DEVICE_ARN", FORTE)
    program = to_program("OPENQASM 3.0;\nqubit[1] q;\nh q[0];\n")
    own = create_quantum_task_request(FORTE, program, 100, "amazon-braket-us-east-1-123456789012", "jobs/x/tasks",
                                      job_token=job_priority_token(FORTE))
    with pytest.warns(PriorityWarning, match="runs in that device's normal queue"):
        other_token = job_priority_token(PAYLOADS["sv1"]["deviceArn"])
    other = create_quantum_task_request(PAYLOADS["sv1"]["deviceArn"], program, 100,
                                        "amazon-braket-us-east-1-123456789012", "tasks", job_token=other_token)
    assert own["jobToken"] == "token-123" and "jobToken" not in other
    # botocore validates both requests against Braket's service model.
    credentials = AwsCredentials(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
    client = BraketDevice(device_arn=FORTE, aws_credentials=credentials).braket_client()
    with Stubber(client) as stubber:
        for request in (own, other):
            answer = {"quantumTaskArn": "arn:aws:braket:us-east-1:123456789012:quantum-task/abc"}
            stubber.add_response("create_quantum_task", answer, {**request, "clientToken": "t"})
            client.create_quantum_task(**request, clientToken="t")


def test_local_tasks_inside_a_job_report_their_queue(monkeypatch):
    monkeypatch.setenv("AMZN_BRAKET_JOB_TOKEN", "token-123")
    monkeypatch.setenv("AMZN_BRAKET_DEVICE_ARN", "local:braket/braket_sv")
    program = "OPENQASM 3.0;\nqubit[1] q;\nh q[0];\n#pragma braket result probability\n"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert BraketDevice().run(program).queue_priority == "Priority"
    with pytest.warns(PriorityWarning):
        assert BraketDevice(device_arn="local:braket/braket_dm").run(program).queue_priority == "Normal"


def test_cost_estimates_follow_braket_billing():
    prices = PriceTable.default()
    assert prices.table["as_of"] and "pricing" in prices.table["source"]
    assert prices.task_cost(FORTE, 100) == pytest.approx(0.30 + 0.08 * 100)
    assert prices.task_cost("arn:aws:braket:eu-north-1::device/qpu/iqm/Garnet", 1000) == pytest.approx(0.30 + 1.45)
    sv1 = PAYLOADS["sv1"]["deviceArn"]
    assert prices.task_cost(sv1, 0, duration_ms=100) == pytest.approx(0.075 * 3 / 60)  # 3 s minimum
    assert prices.task_cost(sv1, 0, duration_ms=120000) == pytest.approx(0.15)
    assert prices.task_cost("local:braket/braket_sv", 1000) == 0.0
    hourly = prices.table["job_instance_per_hour"]["ml.m5.large"]
    assert prices.job_instance_cost("ml.m5.large", 3600) == pytest.approx(hourly)


def test_job_instance_cost_from_get_job():
    from datetime import datetime, timedelta, timezone

    prices = PriceTable.default()
    hourly = prices.table["job_instance_per_hour"]["ml.m5.large"]
    started = datetime(2026, 11, 25, 10, tzinfo=timezone.utc)
    job = {"jobArn": "arn:aws:braket:us-east-1:123456789012:job/x",
           "instanceConfig": {"instanceType": "ml.m5.large", "instanceCount": 2, "volumeSizeInGb": 30},
           "billableDuration": 1_800_000, "startedAt": started, "endedAt": started + timedelta(hours=1)}
    assert prices.job_instance_cost_of(job) == pytest.approx(hourly * 2 * 0.5)  # billed time wins
    del job["billableDuration"]
    assert prices.job_instance_cost_of(job) == pytest.approx(hourly * 2)
    assert prices.job_instance_cost_of({**job, "jobArn": "local:job/x"}) == 0.0


def test_a_price_table_names_a_qpu_by_family_or_by_its_whole_name_in_any_case():
    prices = PriceTable({**PriceTable.default().table,
                         "qpu": {"acme/fancy-7": {"per_task": 1.0, "per_shot": 0.5}}})
    # "Fancy-7" is family "fancy", which the table lacks: the whole name, lowercased, is found.
    assert prices.task_cost("arn:aws:braket:us-east-1::device/qpu/acme/Fancy-7", 2) == 2.0
    with pytest.raises(UnknownPriceError, match="No price for QPU 'acme/plain'"):
        prices.task_cost("arn:aws:braket:us-east-1::device/qpu/acme/Plain-2", 2)


def test_a_simulator_is_billed_three_seconds_at_least_even_where_the_table_does_not_say():
    table = {key: value for key, value in PriceTable.default().table.items() if key != "simulator_minimum_ms"}
    prices = PriceTable(table)
    sv1 = PAYLOADS["sv1"]["deviceArn"]
    per_minute = table["simulator_per_minute"]["amazon/sv1"]
    assert prices.task_cost(sv1, 0) == per_minute * 3000 / 60000.0  # no duration: the minimum
    assert prices.task_cost(sv1, 0, duration_ms=2999) == per_minute * 3000 / 60000.0
    assert prices.task_cost(sv1, 0, duration_ms=6000) == per_minute * 6000 / 60000.0
    one_second = PriceTable({**table, "simulator_minimum_ms": 1000})  # the table's minimum, where it says
    assert one_second.task_cost(sv1, 0, duration_ms=10) == per_minute * 1000 / 60000.0


def test_a_budget_of_zero_is_allowed_and_refuses_every_paid_task():
    budget = Budget(max_cost_usd=0.0)
    budget.reserve(0.0, "a local task")
    with pytest.raises(BudgetExceededError, match="budget of \\$0.00"):
        budget.reserve(0.01, "a paid task")
    with pytest.raises(ValueError, match="at least 0, got -1"):
        Budget(max_cost_usd=-1)


def test_a_reset_budget_counts_from_zero_in_every_copy_of_its_file_ledger(tmp_path):
    ledger = SpendingLedger(tmp_path / "ledger.json")
    budget, copy = Budget(max_cost_usd=1.0, ledger=ledger), Budget(max_cost_usd=1.0, ledger=SpendingLedger(ledger.path))
    budget.reserve(0.75, "a task")
    with pytest.raises(BudgetExceededError):
        copy.reserve(0.5, "another task")
    copy.reset()
    assert budget.spent_usd == copy.spent_usd == 0.0
    budget.reserve(1.0, "the whole budget again")  # all of it is there to spend once more
    assert copy.spent_usd == 1.0


def test_price_table_can_be_replaced(tmp_path, monkeypatch):
    table = dict(PriceTable.default().table, qpu={"ionq/forte": {"per_task": 1.0, "per_shot": 0.0}})
    (tmp_path / "prices.json").write_text(json.dumps(table))
    monkeypatch.setenv("PREFECT_BRAKET_PRICES", str(tmp_path / "prices.json"))
    assert PriceTable.default().task_cost(FORTE, 1000) == 1.0


def test_budget_refuses_the_task_that_would_cross_it():
    device, stubber = aws_device("forte", max_cost_usd=5.0)
    assert device.estimate_cost(shots=100) == pytest.approx(8.30)
    with pytest.raises(BudgetExceededError, match=r"estimated at \$8.3000.*budget of \$5.00"):
        device.run("OPENQASM 3.0;\nqubit[1] q;\nh q[0];\n", shots=100)
    assert device.budget.spent_usd == 0.0
    stubber.assert_no_pending_responses()  # refused after GetDevice, before any CreateQuantumTask

    budget = Budget(max_cost_usd=1.0)
    budget.reserve(0.4, "first")
    budget.reserve(0.4, "second")
    with pytest.raises(BudgetExceededError, match="third is estimated at \\$0.4000; with \\$0.8000 already spent"):
        budget.reserve(0.4, "third")
    assert budget.spent_usd == pytest.approx(0.8)


def test_qiskit_circuits_run_with_braket_gate_names():
    import qiskit
    from qiskit.circuit import Parameter

    theta = Parameter("theta")
    circuit = qiskit.QuantumCircuit(2)
    circuit.rx(theta, 0)
    circuit.cx(0, 1)
    circuit.sdg(1)
    circuit.p(0.3, 0)
    circuit.measure_all()
    program = to_program(circuit, {"theta": math.pi})
    assert "stdgates.inc" not in program.source and "cnot q[0], q[1];" in program.source
    result = BraketDevice().run(program, shots=200)
    assert result.measurement_counts == {"11": 200}  # rx(pi) then cnot: always |11>


def test_targetless_observables_give_one_value_per_qubit():
    program = "OPENQASM 3.0;\nqubit[2] q;\ni q[0];\nx q[1];\n#pragma braket result expectation z all\n"
    assert BraketDevice().run(program, shots=100).values[0] == [1.0, -1.0]
    assert list(BraketDevice().run(program, shots=0).values[0]) == pytest.approx([1.0, -1.0])


def test_a_pickled_device_calls_braket_with_its_own_credentials(monkeypatch):
    # As a sweep chunk's device reaches a Dask worker, whose default chain has other keys.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "the-workers-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "the-workers-secret")
    credentials = AwsCredentials(aws_access_key_id="the-blocks-key", aws_secret_access_key="s", region_name="us-east-1")
    device = BraketDevice(device_arn=FORTE, aws_credentials=credentials)
    assert device.backend().aws.session.get_credentials().access_key == "the-blocks-key"
    copy = cloudpickle.loads(cloudpickle.dumps(device))
    assert copy.backend().aws.session.get_credentials().access_key == "the-blocks-key"
    assert copy.backend().aws.region == "us-east-1"
