"""`run_variational`: the loop inside a Prefect flow, in cached, retried task runs of about five seconds.

A task run per iteration costs 25-40 ms (Prefect's bookkeeping, a result file, events) against an
iteration of tens of milliseconds on a simulator; one per hour-long group would hide a QPU's
progress and redo a lot on a retry. So each `variational-iterations` task run runs iterations
until `group_seconds` have passed (at least one): dozens of simulator iterations, a single QPU
iteration. What holds inside a group:
- every iteration is checkpointed (the latest state, written from a thread of its own as fast as
  the store takes it) and in the table at the end;
- a retried task run goes on from the iteration that failed, in the same state, and a new run of
  the experiment from its checkpoint: neither evaluates a finished iteration again;
- a group's result is cached on where it started (the experiment, the iteration, its parameters)
  and what it computes (shots, device, cost, optimiser, limits), so a re-run that lost the
  checkpoint gets every finished group back without evaluating (or paying for) it again; the
  groups' ends are in their results, so the re-run asks for the same groups whatever its speed.
`publishing.Reporter` shows the iterations.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

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
from prefect_braket.variational.loop import LoopState, Record, final_energy, optimize
from prefect_braket.variational.optimizers import Optimizer, as_optimizer
from prefect_braket.variational.publishing import Reporter

# A task run costs ~25-40 ms on 2 cores (Prefect's ~15 ms between groups, a result file, its events
# and the server's records of them): under 1% of five seconds, against 5-8% of half a second
# (bench/vqe_flow.py at 4,000 shots). The loop's live state is in the progress artifact and the
# log, every 2 seconds, so a longer group hides nothing; a retried group goes on where it failed.
GROUP_SECONDS = 5.0


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
    group_seconds: float = GROUP_SECONDS,
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
        group_seconds: Iterations go on in one task run until this much time has passed (see the
            module's docstring); 0 makes every iteration a task run of its own.

    Returns:
        `energy` (at the last iteration's point; SciPy: the best evaluation), `parameters` (after
        the last update: where a further run would start), `iterations` (in all runs),
        `evaluated_iterations` (in this run), `task_runs` (the groups of iterations of this run),
        `converged`, `experiment_id`.
    """
    if isinstance(group_seconds, bool) or not isinstance(group_seconds, (int, float)) or not group_seconds >= 0:
        raise ValueError(f"group_seconds must be a number of seconds, 0 or more; got {group_seconds!r}.")
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
          Reporter(experiment_id, location, logger, max_iterations, state.next_iteration) as reporter):
        loop = _Loop(cost, device, shots, chosen, max_iterations, tolerance, group_seconds, reporter.record)
        ended, task_runs = False, 0
        while not ended:
            first, task_runs = state.next_iteration, task_runs + 1
            group = run_iterations(quote(loop), quote(state), experiment_id, first, state.parameters.tolist(),
                                   state.initial)
            if state.next_iteration == first and group["history"]:  # from the cache: nothing ran here
                state.advance(group)
                reporter.record(state, state.history[-1])
            ended = group["ended"]
        reporter.finish(state, chosen, len(loop.evaluated), reference_energy, device, shots)
    return {
        "experiment_id": experiment_id,
        "energy": final_energy(state, chosen),
        "parameters": [float(p) for p in state.parameters],
        "iterations": len(state.history),
        "evaluated_iterations": len(loop.evaluated),
        "task_runs": task_runs,
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


@dataclass
class _Loop:
    """What every group of an experiment's run shares: reaches the task runs as it is (quoted)."""

    cost: Cost
    device: Any
    shots: int
    optimizer: Optimizer
    max_iterations: int
    tolerance: float
    group_seconds: float
    record: Record
    evaluated: set[int] = field(default_factory=set)  # the iterations this run evaluated, not cached

    def run(self, state: LoopState) -> bool:
        """Iterations for `group_seconds` (at least one); True when the loop has ended."""
        deadline = time.perf_counter() + self.group_seconds
        return optimize(state, self.optimizer, self.max_iterations, self.tolerance, self._evaluate, self.record,
                        pause=lambda: time.perf_counter() >= deadline)

    def _evaluate(self, iteration: int, points: list[np.ndarray]) -> list[float]:
        token = client_token()
        if token is not None:
            # The task run's token is the same for all its iterations: Braket would answer every
            # iteration after the first with the first one's tasks. One per iteration, the same on a
            # retry of the group, gets a retried iteration the tasks its failed attempt created.
            token = hashlib.sha256(f"{token}:iteration-{iteration}".encode()).hexdigest()[:64]
        values = self.cost.evaluate(self.device, [p.tolist() for p in points], self.shots, client_token=token)
        self.evaluated.add(iteration)
        return values


def _group_key(context: Any, parameters: dict[str, Any]) -> str:
    """Where a group starts and what it computes; parameters rounded, so that float noise does not miss the cache."""
    loop = parameters["loop"]
    start = [round(float(v), 12) for v in parameters["parameters"]]
    return hash_objects(parameters["experiment_id"], parameters["first_iteration"], start, parameters["initial"],
                        loop.shots, loop.device.device_arn, loop.cost.identity(), repr(loop.optimizer),
                        loop.max_iterations, loop.tolerance, raise_on_failure=True)


@task(name="variational-iterations", task_run_name="{experiment_id}-iterations-from-{first_iteration}",
      cache_key_fn=_group_key, persist_result=True, retries=3, retry_delay_seconds=exponential_backoff(2),
      retry_jitter_factor=0.5, retry_condition_fn=retry_if_transient)
def run_iterations(loop: _Loop, state: LoopState, experiment_id: str, first_iteration: int,
                   parameters: list[float], initial: list[float] | None) -> dict[str, Any]:
    """Runs the experiment's iterations from `first_iteration` (at `parameters`; for SciPy, from the
    run that started at `initial`) for about the loop's `group_seconds`, advancing `state` in place
    (a retry goes on where the last attempt stopped); returns what they did, for a cache hit to
    apply, and whether the loop has ended. The arguments after `state` are its values at the
    start, for the cache key: `state` changes as the group runs."""
    ended = loop.run(state)
    return {**state.since(first_iteration), "ended": ended}
