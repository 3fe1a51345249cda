"""`run_variational_in_job`: the same loop as a hybrid job's own code, with no Prefect in it.

Inside a job there is no flow to report to: the iterations go out as metrics (`log_metric`,
which the flow waiting for the job publishes) and the state as the job's checkpoint
(`save_job_checkpoint`, which a later job resumes from). Importing this module imports no Prefect:
only the default device, the `BraketDevice` block (used as a plain device client), does.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from prefect_braket.jobs import (
    get_job_device_arn,
    load_job_checkpoint,
    log_metric,
    save_job_checkpoint,
)
from prefect_braket.variational.costs import as_cost
from prefect_braket.variational.loop import Iteration, LoopState, final_energy, optimize
from prefect_braket.variational.optimizers import as_optimizer


def run_variational_in_job(
    cost: Any, initial_parameters: Sequence[float], optimizer: Any = "gradient-descent", learning_rate: float = 0.1,
    max_iterations: int = 50, tolerance: float = 1e-6, shots: int = 0, device: Any = None,
    resume_from_job: str | None = None,
) -> dict[str, Any]:
    """The same loop as the job's own code: on the job's priority device, metrics through
    `log_metric`, checkpoints through `save_job_checkpoint`.

    It resumes from this job's checkpoint, or from the job named `resume_from_job` (a job started
    with `copy_checkpoints_from_job` has the earlier job's files, under the earlier job's name).
    """
    cost = as_cost(cost)
    chosen = as_optimizer(optimizer, learning_rate)
    if device is None:
        from prefect_braket.orchestration.blocks import BraketDevice

        device = BraketDevice(device_arn=get_job_device_arn())
    try:
        state = LoopState.from_checkpoint(load_job_checkpoint(job_name=resume_from_job))
    except FileNotFoundError:
        state = LoopState(np.asarray(initial_parameters, dtype=float))
    optimize(state, chosen, max_iterations, tolerance, lambda _, points: cost.evaluate(device, points, shots), _record)
    return {"energy": final_energy(state, chosen),
            "parameters": [float(p) for p in state.parameters], "iterations": len(state.history),
            "converged": state.converged}


def _record(state: LoopState, step: Iteration) -> None:
    log_metric(metric_name="energy", value=step.energy, iteration_number=step.iteration)
    log_metric(metric_name="gradient_norm", value=step.gradient_norm, iteration_number=step.iteration)
    save_job_checkpoint(state.to_checkpoint())
