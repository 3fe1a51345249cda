"""A hyperparameter sweep: N hybrid jobs at once on the embedded engine, gathered into one table.

    python flows/sweep.py             # prints {"jobs": ..., "best_learning_rate": ..., "best_energy": ...}

Each job runs the H2 VQE loop inside the job (`run_variational_in_job`: the job's priority
device, metrics through `log_metric`, checkpoints through `save_job_checkpoint`) with its own
learning rate, which its name says (`vqe-lr-0p05-1a2b3c4d`: the rate, then the flow run's id).
The flow submits them all, waits for them side by side (their metrics show as artifacts while
they run), and publishes a comparison table artifact.
"""

import asyncio
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
sys.path.insert(0, str(Path(__file__).parent))

from prefect import flow  # noqa: E402
from prefect.artifacts import acreate_table_artifact  # noqa: E402
from prefect.runtime import flow_run  # noqa: E402
from vqe_h2 import ANSATZ, H2_HAMILTONIAN  # noqa: E402

from prefect_braket import get_job_result, hybrid_job, wait_for_job_async  # noqa: E402
from prefect_braket.variational import ParametricCost, run_variational_in_job  # noqa: E402


def vqe(learning_rate: float = 0.1, max_iterations: int = 20):
    return run_variational_in_job(ParametricCost(ANSATZ, H2_HAMILTONIAN, ["theta"]), [0.0],
                                  learning_rate=learning_rate, max_iterations=max_iterations, tolerance=1e-7)


def job_name(learning_rate: float, run_id: str) -> str:
    """A job's name that says its learning rate, unique to the flow run: `vqe-lr-0p05-1a2b3c4d`,
    `vqe-lr-1em05-1a2b3c4d` for 1e-05 (Braket's names: letters, digits and hyphens, at most 50)."""
    rate = f"{learning_rate:g}".replace(".", "p").replace("-", "m").replace("+", "")
    return f"vqe-lr-{rate}-{run_id.replace('-', '')[:8]}"


@flow(name="vqe-sweep")
async def sweep(learning_rates: tuple[float, ...] = (0.05, 0.1, 0.2, 0.4), max_iterations: int = 20) -> dict:
    """Runs one VQE job per learning rate, concurrently, and compares them.

    Args:
        learning_rates: One hybrid job per learning rate, all at once.
        max_iterations: Iterations of each job.
    """
    names = [job_name(rate, flow_run.id) for rate in learning_rates]
    if len(set(names)) < len(names):
        raise ValueError(f"learning_rates={learning_rates!r} repeats a rate (to 6 significant digits): each rate "
                         "is one job, named after it; give each rate once.")
    jobs = [hybrid_job(device="local:braket/braket_sv", include_modules="vqe_h2", job_name=name)(vqe)(
        learning_rate=rate, max_iterations=max_iterations) for rate, name in zip(learning_rates, names, strict=True)]
    await asyncio.gather(*(wait_for_job_async(job, poll_interval_seconds=1.0, expected_iterations=max_iterations)
                           for job in jobs))
    exact = H2_HAMILTONIAN.exact_ground_energy()
    rows = []
    for rate, job in zip(learning_rates, jobs, strict=True):
        result = get_job_result(job)
        rows.append({"learning_rate": rate, "job": job.name, "energy": result["energy"],
                     "error_hartree": result["energy"] - exact, "iterations": result["iterations"],
                     "converged": result["converged"]})
    await acreate_table_artifact(rows, key="vqe-sweep-comparison", description="VQE for H2 by learning rate")
    best = min(rows, key=lambda r: r["energy"])
    return {"jobs": len(rows), "best_learning_rate": best["learning_rate"], "best_energy": best["energy"],
            "exact_energy": exact, "rows": rows}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(sweep())))
