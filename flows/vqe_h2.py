"""VQE for H2 (STO-3G, bond length 0.735 Å) on the local simulator, as a Prefect flow.

    python flows/vqe_h2.py            # prints {"energy": ..., "exact_energy": ..., "iterations": ...}

The two-qubit Hamiltonian is H2's after the parity mapping and the two-qubit reduction; the
ansatz `ry(theta)` then `x`, `cnot` spans a|01> + b|10>, where the ground state lies. Gradient
descent on parameter-shift gradients reaches chemical accuracy (1.6 mHa) against exact
diagonalisation. The iterations run in cached task runs (of about five seconds each) with a
checkpoint every iteration: run it again with the same experiment id and it resumes instead of
starting over. Energies are in Hartree, with the nuclear repulsion included.

The flow is `async def` although `run_variational` is not: a sync flow waits at exit, up to a
second, for Prefect's heartbeat thread (on by default, for crash detection), and an async one
does not; in a run this short that wait is a large share of what the flow adds to the circuits
(bench/vqe_flow.py). Call it with `asyncio.run(vqe_h2())`, or `await` it.
"""

import asyncio
import json
import os
import sys
from typing import Any

os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")

from prefect import flow  # noqa: E402
from prefect.runtime import flow_run  # noqa: E402

from prefect_braket import BraketDevice  # noqa: E402
from prefect_braket.variational import Observable, ParametricCost, run_variational  # noqa: E402

NUCLEAR_REPULSION = 0.7199689944489797
H2_HAMILTONIAN = Observable.from_dict(
    {
        "II": -1.052373245772859,
        "IZ": 0.39793742484318045,
        "ZI": -0.39793742484318045,
        "ZZ": -0.01128010425623538,
        "XX": 0.18093119978423156,
    },
    offset=NUCLEAR_REPULSION,
)
ANSATZ = """OPENQASM 3.0;
input float theta;
qubit[2] q;
ry(theta) q[0];
x q[1];
cnot q[0], q[1];
"""
CHEMICAL_ACCURACY = 1.6e-3


def solve_h2(device: Any, experiment_id: str, *, shots: int = 0, optimizer: str = "gradient-descent",
             learning_rate: float = 0.4, max_iterations: int = 40, tolerance: float = 1e-7, initial_theta: float = 0.0,
             checkpoint_location: str | None = None) -> dict:
    """VQE for H2 on `device` inside the running flow, beside exact diagonalisation.

    `vqe_h2` runs it on the device its ARN names, with the same defaults; flows/resume_demo.py
    runs it on a device lost midway.
    """
    exact = H2_HAMILTONIAN.exact_ground_energy()
    summary = run_variational(
        ParametricCost(ANSATZ, H2_HAMILTONIAN, ["theta"]),
        [initial_theta],
        experiment_id=experiment_id,
        device=device,
        optimizer=optimizer,
        learning_rate=learning_rate,
        max_iterations=max_iterations,
        tolerance=tolerance,
        shots=shots,
        checkpoint_location=checkpoint_location,
        reference_energy=exact,
    )
    return {
        "energy": summary["energy"],
        "exact_energy": exact,
        "error_hartree": summary["energy"] - exact,
        "chemical_accuracy": abs(summary["energy"] - exact) < CHEMICAL_ACCURACY,
        "iterations": summary["iterations"],
        "evaluated_iterations": summary["evaluated_iterations"],
        "task_runs": summary["task_runs"],
    }


@flow(name="vqe-h2")
async def vqe_h2(
    experiment_id: str | None = None,
    device_arn: str = "local:braket/braket_sv",
    shots: int = 0,
    optimizer: str = "gradient-descent",
    learning_rate: float = 0.4,
    max_iterations: int = 40,
    tolerance: float = 1e-7,
    initial_theta: float = 0.0,
    checkpoint_location: str | None = None,
) -> dict:
    """Finds H2's ground-state energy with VQE and compares it with exact diagonalisation.

    Without an experiment id, each flow run is its own experiment (a retry of the run resumes it);
    with one, any run with that id resumes it.

    Args:
        experiment_id: Names the checkpoint and the artifacts ([a-z0-9-]); a run with the same id resumes it.
        device_arn: Where the circuits run: local:braket/braket_sv, or an AWS device ARN.
        shots: Shots per circuit; 0 for exact values on simulators.
        optimizer: "gradient-descent", "spsa" or "scipy:<method>".
        learning_rate: Gradient descent's step size.
        max_iterations: Stop after this many iterations.
        tolerance: Stop when the energy changes by less than this (Hartree) between iterations.
        initial_theta: The ansatz's angle at the first iteration.
        checkpoint_location: A directory or s3:// prefix; $PREFECT_BRAKET_HOME/experiments by default.
    """
    return solve_h2(BraketDevice(device_arn=device_arn), experiment_id or f"vqe-h2-{str(flow_run.id)[:8]}",
                    shots=shots, optimizer=optimizer, learning_rate=learning_rate, max_iterations=max_iterations,
                    tolerance=tolerance, initial_theta=initial_theta, checkpoint_location=checkpoint_location)


if __name__ == "__main__":
    print(json.dumps(asyncio.run(vqe_h2(experiment_id=sys.argv[1] if len(sys.argv) > 1 else None))))
