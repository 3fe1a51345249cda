"""Every kind of `results.json` the endpoint writes, read back from its S3 and checked against
Braket's own readers: the schema (`braket.task_result`), the SDK's `GateModelQuantumTaskResult`,
and prefect-braket's `TaskResult`, which must read the same values."""

import json
import math

import boto3
import numpy as np
import pytest

from prefect_braket.quantum.programs import plain_value
from prefect_braket.quantum.results import TaskResult

SV1 = "arn:aws:braket:::device/quantum-simulator/amazon/sv1"
DM1 = "arn:aws:braket:::device/quantum-simulator/amazon/dm1"
FORTE = "arn:aws:braket:us-east-1::device/qpu/ionq/Forte-1"
BELL = "OPENQASM 3.0;\nqubit[2] q;\nh q[0];\ncnot q[0], q[1];\n"
PLUS = "OPENQASM 3.0;\nqubit[1] q;\nh q[0];\n"
R = 1 / math.sqrt(2)

# name: (device, shots, program, the values the SDK reads, or None where they are random)
CASES = {
    "expectation": (SV1, 0, BELL + "#pragma braket result expectation z(q[0]) @ z(q[1])", [1.0]),
    "variance": (SV1, 0, PLUS + "#pragma braket result variance x(q[0])", [0.0]),
    "probability": (SV1, 0, BELL + "#pragma braket result probability q[0], q[1]", [[0.5, 0, 0, 0.5]]),
    "state vector": (SV1, 0, BELL + "#pragma braket result state_vector", [[R + 0j, 0j, 0j, R + 0j]]),
    "density matrix": (
        DM1, 0, PLUS + "#pragma braket result density_matrix q[0]", [[[0.5 + 0j, 0.5 + 0j], [0.5 + 0j, 0.5 + 0j]]]
    ),
    "amplitude": (SV1, 0, BELL + '#pragma braket result amplitude "00", "01"', [{"00": R + 0j, "01": 0j}]),
    "hermitian": (SV1, 0, PLUS + "#pragma braket result expectation hermitian([[0, 1], [1, 0]]) q[0]", [1.0]),
    "several": (SV1, 0, BELL + "#pragma braket result expectation z(q[0])\n#pragma braket result probability q[1]\n"
                "#pragma braket result amplitude \"11\"", [0.0, [0.5, 0.5], {"11": R + 0j}]),
    "noise": (DM1, 0, "OPENQASM 3.0;\nqubit[1] q;\nx q[0];\n#pragma braket noise bit_flip(0.25) q[0]\n"
              "#pragma braket result probability q[0]", [[0.25, 0.75]]),
    "bits": (SV1, 100, BELL + "bit[2] b;\nb = measure q;", []),
    "bits with result types": (SV1, 100, BELL + "#pragma braket result expectation z(q[0]) @ z(q[1])\n"
                               "#pragma braket result probability q[0]\n#pragma braket result sample z(q[1])", None),
    "sampled in the observable's basis": (SV1, 100, PLUS + "#pragma braket result expectation x(q[0])\n"
                                          "#pragma braket result variance x(q[0])", [1.0, 0.0]),
    # one observable per qubit when sampling: X as a matrix is not X to the simulator
    "hermitian, sampled": (SV1, 100, PLUS + "#pragma braket result expectation hermitian([[0, 1], [1, 0]]) q[0]",
                           [1.0]),
    # both qubits used, so both measured
    "one value per qubit": (SV1, 100, "OPENQASM 3.0;\nqubit[2] q;\nz q[0];\nx q[1];\n"
                            "#pragma braket result expectation z all", [[1.0, -1.0]]),
    "qpu": (FORTE, 100, BELL + "#pragma braket result expectation z(q[0]) @ z(q[1])", [1.0]),
    "noise, sampled": (DM1, 200, "OPENQASM 3.0;\nqubit[1] q;\n#pragma braket noise bit_flip(0.5) q[0]\n"
                       "#pragma braket result probability q[0]", None),
}


@pytest.fixture(scope="module")
def s3(braket_endpoint):
    return boto3.client("s3")


def _run(device_arn: str, shots: int, source: str):
    """The task's SDK handle, once it has completed, and its `results.json` as the endpoint wrote it."""
    from braket.aws import AwsDevice
    from braket.ir.openqasm import Program

    task = AwsDevice(device_arn).run(Program(source=source), shots=shots, poll_timeout_seconds=120,
                                     poll_interval_seconds=0.1)
    assert task.result() is not None, task.metadata().get("failureReason")
    return task


def _same(ours, theirs) -> bool:
    """Whether two readings hold the same values, to rounding: numpy arrays, lists and dicts alike,
    complex numbers as Braket's `[re, im]` pairs (the SDK leaves a density matrix so)."""
    ours, theirs = plain_value(ours), plain_value(theirs)
    if isinstance(ours, dict):
        return isinstance(theirs, dict) and ours.keys() == theirs.keys() and all(
            _same(ours[k], theirs[k]) for k in ours)
    if isinstance(ours, list):
        return isinstance(theirs, list) and len(ours) == len(theirs) and all(map(_same, ours, theirs))
    return not isinstance(theirs, (dict, list)) and math.isclose(ours, theirs, abs_tol=1e-9)


@pytest.mark.parametrize("case", list(CASES))
def test_results_json_reads_in_braket_s_schema_and_sdk_and_here_alike(case, s3):
    from braket.schema_common import BraketSchemaBase
    from braket.task_result import GateModelTaskResult
    from braket.tasks import GateModelQuantumTaskResult

    device_arn, shots, source, expected = CASES[case]
    task = _run(device_arn, shots, source)
    metadata = task.metadata()
    raw = s3.get_object(Bucket=metadata["outputS3Bucket"],
                        Key=f"{metadata['outputS3Directory']}/results.json")["Body"].read().decode()

    schema = GateModelTaskResult.parse_raw(raw)  # pydantic's validation: raises on any departure
    assert isinstance(BraketSchemaBase.parse_raw_schema(raw), GateModelTaskResult)
    assert (schema.taskMetadata.id, schema.taskMetadata.deviceId, schema.taskMetadata.shots) == (
        task.id, device_arn, shots)
    assert (schema.measurements is None) == (shots == 0)
    sdk = GateModelQuantumTaskResult.from_string(raw)
    if expected is not None:
        assert _same(sdk.values, expected), sdk.values

    ours = TaskResult.from_gate_model(json.loads(raw), task.id, device_arn)
    assert _same(ours.values, sdk.values), (ours.values, sdk.values)
    assert ours.shots == shots
    if shots:
        assert ours.measured_qubits == sdk.measured_qubits
        assert np.array_equal(ours.measurements, sdk.measurements)
        assert ours.measurement_counts == sdk.measurement_counts


def test_sampled_values_are_the_bits_measured(s3):
    """A random case checked against its own bits: Z⊗Z of a Bell pair, the first qubit's probability
    and the second qubit's samples."""
    from braket.tasks import GateModelQuantumTaskResult

    _, shots, source, _ = CASES["bits with result types"]
    task = _run(SV1, shots, source)
    metadata = task.metadata()
    raw = s3.get_object(Bucket=metadata["outputS3Bucket"],
                        Key=f"{metadata['outputS3Directory']}/results.json")["Body"].read().decode()
    sdk = GateModelQuantumTaskResult.from_string(raw)
    bits = sdk.measurements
    expectation, probability, samples = sdk.values
    assert expectation == 1.0
    assert probability.tolist() == [np.mean(bits[:, 0] == 0), np.mean(bits[:, 0] == 1)]
    assert list(samples) == (1 - 2 * bits[:, 1]).tolist()
