"""The cache keys of `run_quantum_task` and `run_quantum_batch`: what a result depends on, and nothing else."""

from types import SimpleNamespace

import pytest
from prefect_aws import AwsCredentials

from prefect_braket import BraketDevice, run_quantum_batch, run_quantum_task

FORTE = "arn:aws:braket:us-east-1::device/qpu/ionq/Forte-1"
PROGRAM = "OPENQASM 3.0;\ninput float theta;\nqubit[1] q;\nrx(theta) q[0];\n#pragma braket result expectation z(q[0])\n"


def key(task, **inputs):
    """The key Prefect would look the run up by: the task's own cache policy on these inputs."""
    return task.cache_policy.compute_key(SimpleNamespace(task=task), inputs, {})


def credentials(number):
    return AwsCredentials(aws_access_key_id=f"AKIAEXAMPLE{number:09d}", aws_secret_access_key=f"secret-{number}",
                          region_name="us-east-1")


@pytest.mark.parametrize("task, program", [(run_quantum_task, {"program": PROGRAM}),
                                           (run_quantum_batch, {"programs": [PROGRAM, PROGRAM]})],
                         ids=["task", "batch"])
def test_devices_with_other_credentials_share_a_key_but_other_shots_do_not(task, program):
    mine = BraketDevice(device_arn=FORTE, aws_credentials=credentials(1))
    yours = BraketDevice(device_arn=FORTE, aws_credentials=credentials(2))
    anonymous = BraketDevice(device_arn=FORTE)
    inputs = {"theta": 0.5}
    ten = key(task, device=mine, shots=10, inputs=inputs, **program)
    assert key(task, device=yours, shots=10, inputs=inputs, **program) == ten
    assert key(task, device=anonymous, shots=10, inputs=inputs, **program) == ten
    assert key(task, device=mine, shots=20, inputs=inputs, **program) != ten
    assert key(task, device=mine, shots=10, inputs={"theta": 0.6}, **program) != ten
    # Shots left out are the device's default, and key as if given.
    defaulted = BraketDevice(device_arn=FORTE, aws_credentials=credentials(3), default_shots=10)
    assert key(task, device=defaulted, shots=None, inputs=inputs, **program) == ten


def test_a_task_and_a_batch_of_the_same_program_do_not_share_a_key():
    device = BraketDevice(device_arn=FORTE)
    assert (key(run_quantum_task, device=device, program=PROGRAM, shots=10, inputs={"theta": 0.5})
            != key(run_quantum_batch, device=device, programs=[PROGRAM], shots=10, inputs={"theta": 0.5}))
