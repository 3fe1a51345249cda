"""The optimisation loop itself, with no Prefect in it: the flow and the hybrid job both run it.

`optimize` advances a `LoopState` (parameters, the history of iterations, whether it converged)
and leaves the rest to two callbacks: `evaluate(iteration, points)` computes the cost at an
iteration's points (a cached task run in a flow, a plain call in a job) and `record(state, step)`
follows each finished iteration (checkpoints, artifacts, metrics). A state restored from a
checkpoint resumes where it stopped.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from prefect_braket.variational.optimizers import Optimizer, ScipyMinimize

Evaluate = Callable[[int, list[np.ndarray]], list[float]]
Record = Callable[["LoopState", "Iteration"], None]


@dataclass
class Iteration:
    """One finished iteration: the energy at the point it started from, and how long it took."""

    iteration: int
    energy: float
    gradient_norm: float
    parameters: list[float]
    seconds: float

    def row(self) -> dict[str, Any]:
        """The iteration as a row of the table artifact."""
        return {"iteration": self.iteration, "energy": self.energy, "gradient_norm": self.gradient_norm,
                "parameters": json.dumps([round(p, 6) for p in self.parameters]), "seconds": round(self.seconds, 3)}


@dataclass
class LoopState:
    """Where a loop stands; `to_checkpoint` and `from_checkpoint` carry it between runs."""

    parameters: np.ndarray
    history: list[Iteration] = field(default_factory=list)
    converged: bool = False
    initial: list[float] | None = None  # where a SciPy run started, to replay it on resume

    @property
    def next_iteration(self) -> int:
        return self.history[-1].iteration + 1 if self.history else 0

    def to_checkpoint(self) -> dict[str, Any]:
        return {"parameters": self.parameters.tolist(), "converged": self.converged,
                "history": [vars(h) for h in self.history], "initial": self.initial}

    @classmethod
    def from_checkpoint(cls, data: dict[str, Any]) -> "LoopState":
        return cls(np.asarray(data["parameters"], dtype=float), [Iteration(**h) for h in data["history"]],
                   bool(data.get("converged")), data.get("initial"))

    def best_energy(self) -> float | None:
        return min(h.energy for h in self.history) if self.history else None


def optimize(
    state: LoopState, optimizer: Optimizer, max_iterations: int, tolerance: float, evaluate: Evaluate, record: Record,
) -> LoopState:
    """Runs iterations until `max_iterations` or an energy change below `tolerance`; returns `state`."""
    if isinstance(optimizer, ScipyMinimize):
        return _optimize_with_scipy(state, optimizer, max_iterations, tolerance, evaluate, record)
    while not state.converged and state.next_iteration < max_iterations:
        iteration = state.next_iteration
        started = time.perf_counter()
        points = optimizer.points(state.parameters, iteration)
        values = evaluate(iteration, points)
        parameters, energy, gradient_norm = optimizer.step(state.parameters, values, iteration)
        step = Iteration(iteration, float(energy), gradient_norm, [float(p) for p in state.parameters],
                         time.perf_counter() - started)
        previous = state.history[-1].energy if state.history else None
        state.history.append(step)
        state.parameters = parameters
        state.converged = previous is not None and abs(previous - step.energy) < tolerance
        record(state, step)
    return state


def final_energy(state: LoopState, optimizer: Optimizer) -> float | None:
    """The energy at the final parameters: the last iteration's, or SciPy's best evaluation."""
    if not state.history:
        return None
    return state.best_energy() if isinstance(optimizer, ScipyMinimize) else state.history[-1].energy


class _IterationLimit(Exception):
    """Raised from the objective to stop SciPy at `max_iterations` evaluations, whatever the method."""


def _optimize_with_scipy(
    state: LoopState, optimizer: ScipyMinimize, max_iterations: int, tolerance: float, evaluate: Evaluate,
    record: Record,
) -> LoopState:
    """SciPy's loop, each evaluation an iteration. SciPy cannot start midway, so a resumed run starts
    over from the first run's start and replays the checkpointed evaluations: SciPy asks for the same
    points again, and gets the recorded energies without evaluating them."""
    # scipy is optional: only this optimiser needs it.
    from scipy.optimize import minimize

    replay = list(state.history)
    start = np.asarray(state.initial if state.initial is not None else state.parameters, dtype=float)
    state.initial, state.history = start.tolist(), []

    def objective(x: np.ndarray) -> float:
        index = len(state.history)
        if index >= max_iterations:
            raise _IterationLimit
        if index < len(replay) and np.allclose(replay[index].parameters, x, rtol=0, atol=1e-12):
            state.history.append(replay[index])  # finished before: not evaluated again
            return replay[index].energy
        started = time.perf_counter()
        value = float(evaluate(index, [np.asarray(x, dtype=float)])[0])
        step = Iteration(index, value, float("nan"), [float(v) for v in x], time.perf_counter() - started)
        state.history.append(step)
        state.parameters = np.asarray(min(state.history, key=lambda h: h.energy).parameters)
        record(state, step)
        return value

    try:
        outcome = minimize(objective, start, method=optimizer.method, tol=tolerance or None,
                           options={"maxiter": max_iterations, **optimizer.options})
        state.converged = bool(outcome.success)
    except _IterationLimit:
        state.converged = False
    return state
