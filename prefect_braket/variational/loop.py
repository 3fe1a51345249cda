"""The optimisation loop itself, with no Prefect in it: the flow and the hybrid job both run it.

`optimize` advances a `LoopState` (parameters, the history of iterations, whether it converged)
and leaves the rest to two callbacks: `evaluate(iteration, points)` computes the cost at an
iteration's points and `record(state, step)` follows each finished iteration (checkpoints,
artifacts, metrics). A state restored from a checkpoint resumes where it stopped, and so does a
call stopped by its `pause` (a flow runs the loop in task runs of about five seconds each).
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
Pause = Callable[[], bool]


@dataclass
class Iteration:
    """One finished iteration: the energy at the point it started from, and how long it took."""

    iteration: int
    energy: float
    gradient_norm: float
    parameters: list[float]
    seconds: float

    def row(self) -> dict[str, Any]:
        """The iteration as a row of the table artifact, its floats to 10 significant digits (the
        checkpoint keeps them whole)."""
        return {"iteration": self.iteration, "energy": float(f"{self.energy:.10g}"),
                "gradient_norm": float(f"{self.gradient_norm:.10g}"),
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

    def since(self, iteration: int) -> dict[str, Any]:
        """What the loop did from `iteration` on, for `advance` to apply to a state that stood there."""
        return {"history": [vars(h) for h in self.history[iteration:]], "parameters": self.parameters.tolist(),
                "converged": self.converged, "initial": self.initial}

    def advance(self, since: dict[str, Any]) -> None:
        """Applies what `since` returned for the iteration this state stands at."""
        self.history.extend(Iteration(**h) for h in since["history"])
        self.parameters = np.asarray(since["parameters"], dtype=float)
        self.converged, self.initial = since["converged"], since["initial"]


def optimize(
    state: LoopState, optimizer: Optimizer, max_iterations: int, tolerance: float, evaluate: Evaluate, record: Record,
    pause: Pause | None = None,
) -> bool:
    """Runs iterations until `max_iterations` or an energy change below `tolerance` and returns True;
    returns False where `pause()`, asked after each iteration but the call's last, said to stop first."""
    if isinstance(optimizer, ScipyMinimize):
        return _optimize_with_scipy(state, optimizer, max_iterations, tolerance, evaluate, record, pause)
    first = state.next_iteration
    while not state.converged and state.next_iteration < max_iterations:
        if pause is not None and state.next_iteration > first and pause():
            return False
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
    return True


def final_energy(state: LoopState, optimizer: Optimizer) -> float | None:
    """The energy at the final parameters: the last iteration's, or SciPy's best evaluation."""
    if not state.history:
        return None
    return state.best_energy() if isinstance(optimizer, ScipyMinimize) else state.history[-1].energy


class _IterationLimit(Exception):
    """Raised from the objective to stop SciPy at `max_iterations` evaluations, whatever the method."""


class _Paused(Exception):
    """Raised from the objective to stop SciPy where `pause()` says; the next call replays up to there."""


def _optimize_with_scipy(
    state: LoopState, optimizer: ScipyMinimize, max_iterations: int, tolerance: float, evaluate: Evaluate,
    record: Record, pause: Pause | None,
) -> bool:
    """SciPy's loop, each evaluation an iteration. SciPy cannot start midway, so a resumed run (or a
    paused call's next) starts over from the first run's start and replays the recorded evaluations:
    SciPy asks for the same points again, and gets their energies without evaluating them."""
    # scipy is optional: only this optimiser needs it.
    from scipy.optimize import minimize

    replay = list(state.history)
    start = np.asarray(state.initial if state.initial is not None else state.parameters, dtype=float)
    state.initial, state.history = start.tolist(), []
    first = len(replay)

    def objective(x: np.ndarray) -> float:
        index = len(state.history)
        if index >= max_iterations:
            raise _IterationLimit
        if index < len(replay) and np.allclose(replay[index].parameters, x, rtol=0, atol=1e-12):
            state.history.append(replay[index])  # finished before: not evaluated again
            return replay[index].energy
        if pause is not None and index > first and pause():
            raise _Paused
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
    except _Paused:
        return False
    return True
