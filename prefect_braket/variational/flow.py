"""`run_variational`: the loop inside a Prefect flow, each iteration a cached, retried task run.

The task's cache key is the experiment id, the iteration, its points, the shots, the device and
the cost's identity, so a retried or re-run flow gets finished iterations back without evaluating
(or paying for) them again, even when their checkpoint was never written. `publishing.Reporter`
shows the iterations; the checkpoint lets a new run with the same experiment id resume.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Any, Iterator, Sequence

import numpy as np
from prefect import task
from prefect.logging import get_run_logger
from prefect.tasks import exponential_backoff
from prefect.utilities.annotations import quote
from prefect.utilities.hashing import hash_objects

from prefect_braket.orchestration.blocks import BraketDevice
from prefect_braket.orchestration.context import (
    artifact_key,
    client_token,
    retry_if_transient,
)
from prefect_braket.orchestration.prefect_api import shared_sync_client
from prefect_braket.variational.checkpoints import (
    checkpoint_path,
    default_location,
    load_checkpoint,
)
from prefect_braket.variational.costs import Cost, as_cost
from prefect_braket.variational.loop import Evaluate, LoopState, final_energy, optimize
from prefect_braket.variational.optimizers import as_optimizer
from prefect_braket.variational.publishing import Reporter


def run_variational(
    cost: Any,
    initial_parameters: Sequence[float],
    experiment_id: str,
    device: Any = None,
    optimizer: Any = "gradient-descent",
    learning_rate: float = 0.1,
    max_iterations: int = 50,
    tolerance: float = 1e-6,
    shots: int = 0,
    checkpoint_location: str | None = None,
    reference_energy: float | None = None,
) -> dict[str, Any]:
    """Minimises `cost` inside the current flow; resumes from the experiment's checkpoint.

    Args:
        cost: A `ParametricCost`, or a function `(device, parameters, shots) -> float`.
        initial_parameters: Where the first run starts (a resumed run starts at its checkpoint).
        experiment_id: Names the checkpoint, the cache entries and the artifacts ([a-z0-9-]).
        device: A `BraketDevice`; the local state-vector simulator by default.
        optimizer: "gradient-descent" (parameter shift), "spsa", "scipy:<method>" (with scipy
            installed), or a GradientDescent, SPSA or ScipyMinimize object.
        max_iterations, tolerance: Stop after this many iterations, or when the energy changes
            by less than `tolerance` between iterations.
        shots: Shots per circuit; 0 for exact values on simulators.
        checkpoint_location: A directory or `s3://` prefix; default `$PREFECT_BRAKET_HOME/experiments`.
        reference_energy: Drawn in the convergence plot (an exact energy, say).

    Returns:
        `energy` (at the last iteration's point; SciPy: the best evaluation), `parameters` (after
        the last update: where a further run would start), `iterations` (in all runs),
        `evaluated_iterations` (in this run), `converged`, `experiment_id`.
    """
    if artifact_key(experiment_id) != experiment_id:
        raise ValueError(f"experiment_id {experiment_id!r} must be lowercase letters, digits and hyphens "
                         f"(try {artifact_key(experiment_id)!r}).")
    logger = get_run_logger()
    cost, chosen, device = as_cost(cost), as_optimizer(optimizer, learning_rate), device or BraketDevice()
    location = checkpoint_location or default_location()
    state = _resume(location, experiment_id, initial_parameters, logger)
    if isinstance(device, BraketDevice):
        device.warm_up()  # before the loop's clock: the first iteration's time is then the iteration's own
    # The publisher's thread starts inside the shared client's context, and so uses that client too.
    with (shared_sync_client(),
          Reporter(experiment_id, location, logger, max_iterations, state.next_iteration) as reporter,
          _counting_evaluations() as evaluated):
        optimize(state, chosen, max_iterations, tolerance, _run_iterations_as_tasks(cost, device, shots, experiment_id),
                 reporter.record)
        reporter.finish(state, chosen, len(evaluated), reference_energy, device, shots)
    return {
        "experiment_id": experiment_id,
        "energy": final_energy(state, chosen),
        "parameters": [float(p) for p in state.parameters],
        "iterations": len(state.history),
        "evaluated_iterations": len(evaluated),
        "converged": state.converged,
    }


def _resume(location: str, experiment_id: str, initial_parameters: Sequence[float], logger: Any) -> LoopState:
    """The experiment's state from its checkpoint, or a new one at `initial_parameters`."""
    saved = load_checkpoint(location, experiment_id)
    if not saved:
        return LoopState(np.asarray(initial_parameters, dtype=float))
    state = LoopState.from_checkpoint(saved)
    logger.info("Resuming experiment %s after iteration %d from %s", experiment_id, state.next_iteration - 1,
                checkpoint_path(location, experiment_id))
    return state


def _run_iterations_as_tasks(cost: Cost, device: Any, shots: int, experiment_id: str) -> Evaluate:
    """The loop's `evaluate`: each iteration one `evaluate_iteration` task run."""
    def evaluate(iteration: int, points: list[np.ndarray]) -> list[float]:
        # Quoted, the cost and the device reach the task as they are: Prefect does not walk their fields
        # for upstream results on every call.
        return evaluate_iteration(quote(cost), quote(device), [p.tolist() for p in points], shots, experiment_id,
                                  iteration)

    return evaluate


# The iterations `run_variational` had evaluated rather than answered from the cache. Counted by the task
# itself: telling from the returned state would need the state's result, a trip through Prefect's event loop
# thread per iteration.
_evaluated_iterations: contextvars.ContextVar[set[int] | None] = contextvars.ContextVar(
    "prefect_braket_evaluated_iterations", default=None)


@contextlib.contextmanager
def _counting_evaluations() -> Iterator[set[int]]:
    """The iterations the task runs inside evaluate (rather than answer from the cache)."""
    evaluated: set[int] = set()
    token = _evaluated_iterations.set(evaluated)
    try:
        yield evaluated
    finally:
        _evaluated_iterations.reset(token)


def _iteration_key(context: Any, parameters: dict[str, Any]) -> str:
    """What an iteration's result depends on; points rounded, so that float noise does not miss the cache."""
    device = parameters["device"]
    points = [[round(float(v), 12) for v in point] for point in parameters["points"]]
    return hash_objects(parameters["experiment_id"], parameters["iteration"], points, parameters["shots"],
                        device.device_arn, parameters["cost"].identity(), raise_on_failure=True)


@task(name="variational-iteration", task_run_name="{experiment_id}-iteration-{iteration}", cache_key_fn=_iteration_key,
      persist_result=True, retries=3, retry_delay_seconds=exponential_backoff(2), retry_jitter_factor=0.5,
      retry_condition_fn=retry_if_transient)
def evaluate_iteration(cost: Any, device: Any, points: list[list[float]], shots: int, experiment_id: str,
                       iteration: int) -> list[float]:
    """Evaluates one iteration's points (its circuits in one batch); cached per experiment and iteration."""
    if (evaluated := _evaluated_iterations.get()) is not None:
        evaluated.add(iteration)
    return cost.evaluate(device, points, shots, client_token=client_token())
