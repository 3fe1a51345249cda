"""Variational algorithms as flows: every iteration a cached, retried task run, checkpointed and shown.

`run_variational` minimises a cost, either a parametric program with a weighted Pauli
observable (`ParametricCost`) or a Python function of a device and parameters, with SPSA,
gradient descent on parameter-shift gradients, or a SciPy minimiser. Inside a flow:

- each iteration is one task run (all its circuits in one batch), retried on transient errors
  and cached on the experiment id, the iteration and its points, so a retried or re-run flow
  gets finished iterations back without evaluating (or paying for) them again;
- each iteration writes a Braket-format checkpoint (`PersistedJobData`, locally or in S3 through
  fsspec) from which a new run with the same experiment id resumes;
- a progress artifact and a log line follow the iterations (at most once a second), a table
  artifact holds every row (refreshed every `table_every` iterations and at the end), and a
  summary with a convergence plot closes the run;
- checkpoints and artifacts go out in order from a thread of their own, so the loop does not wait
  for them; the run returns once they are all out, and fails if one of them failed.

It works in sync and async flows alike.

The same loop runs inside a hybrid job (`run_variational_in_job`), where it uses the job's
priority device, reports through `log_metric` and checkpoints with `save_job_checkpoint`; the
flow waiting for the job publishes those metrics.

Example:
    ```python
    from prefect import flow
    from prefect_braket import BraketDevice
    from prefect_braket.variational import Observable, ParametricCost, run_variational

    H2 = Observable.from_dict({"II": -1.0524, "IZ": 0.3979, "ZI": -0.3979, "ZZ": -0.0113, "XX": 0.1809})
    ANSATZ = "OPENQASM 3.0;\\ninput float theta;\\nqubit[2] q;\\nry(theta) q[0];\\nx q[1];\\ncnot q[0], q[1];\\n"

    @flow
    def vqe():
        return run_variational(ParametricCost(ANSATZ, H2, ["theta"]), [0.0], experiment_id="h2",
                               device=BraketDevice(), optimizer="gradient-descent")
    ```
"""

from __future__ import annotations

import base64
import contextvars
import functools
import hashlib
import inspect
import json
import math
import os
import queue
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
from prefect import task
from prefect.logging import get_run_logger
from prefect.tasks import exponential_backoff
from prefect.utilities.annotations import quote
from prefect.utilities.hashing import hash_objects

from prefect_braket.core.home import package_home
from prefect_braket.jobs import PersistedJobDataFormat
from prefect_braket.jobs.data_persistence import (
    dump_persisted_data,
    load_persisted_data,
)
from prefect_braket.orchestration.blocks import BraketDevice
from prefect_braket.orchestration.context import (
    artifact_key,
    client_token,
    retry_if_transient,
)
from prefect_braket.orchestration.prefect_api import (
    publish_markdown,
    publish_progress,
    publish_table,
    shared_sync_client,
    update_progress,
)

PAULI_STRING = re.compile(r"^[IXYZ]+$")
PAULI_MATRICES = {
    "I": np.eye(2), "X": np.array([[0, 1], [1, 0]]), "Y": np.array([[0, -1j], [1j, 0]]), "Z": np.diag([1.0, -1.0]),
}


PROGRESS_INTERVAL_SECONDS = 1.0


class InjectedFailure(RuntimeError):
    """A failure asked for (`fail_at_iteration`), to show and test resuming."""


# -- what is minimised ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Observable:
    """A weighted sum of Pauli strings; character i of a string acts on qubit i."""

    terms: tuple[tuple[str, float], ...]
    offset: float = 0.0

    @classmethod
    def from_dict(cls, terms: dict[str, float], offset: float = 0.0) -> "Observable":
        lengths = {len(p) for p in terms}
        if len(lengths) != 1 or not all(PAULI_STRING.match(p) for p in terms):
            raise ValueError(f"Observable terms must be Pauli strings of one length over I, X, Y, Z; got {sorted(terms)}.")
        return cls(tuple((p, float(c)) for p, c in terms.items()), float(offset))

    @property
    def num_qubits(self) -> int:
        return len(self.terms[0][0])

    def matrix(self) -> np.ndarray:
        size = 2 ** self.num_qubits
        total = self.offset * np.eye(size, dtype=complex)
        for paulis, coefficient in self.terms:
            factor = np.array([[1.0]])
            for letter in paulis:
                factor = np.kron(factor, PAULI_MATRICES[letter])
            total = total + coefficient * factor
        return total

    def exact_ground_energy(self) -> float:
        """The lowest eigenvalue, by exact diagonalisation."""
        return float(np.linalg.eigvalsh(self.matrix())[0])

    def measured_terms(self) -> list[tuple[str, float]]:
        return [(p, c) for p, c in self.terms if set(p) != {"I"}]

    def constant(self) -> float:
        return self.offset + sum(c for p, c in self.terms if set(p) == {"I"})

    def groups(self) -> list[list[tuple[str, float]]]:
        """Terms in groups that one circuit measures together (qubit-wise commuting)."""
        groups: list[tuple[list[str], list[tuple[str, float]]]] = []
        for paulis, coefficient in self.measured_terms():
            for basis, members in groups:
                if all(b == "I" or p == "I" or b == p for b, p in zip(basis, paulis)):
                    basis[:] = [p if b == "I" else b for b, p in zip(basis, paulis)]
                    members.append((paulis, coefficient))
                    break
            else:
                groups.append((list(paulis), [(paulis, coefficient)]))
        return [members for _, members in groups]


def expectation_pragma(paulis: str, register: str = "q") -> str:
    factors = [f"{p.lower()}({register}[{i}])" for i, p in enumerate(paulis) if p != "I"]
    return "#pragma braket result expectation " + " @ ".join(factors)


@dataclass(frozen=True)
class ParametricCost:
    """The expectation of `observable` in the state an ansatz prepares.

    Args:
        ansatz: OpenQASM 3 preparing the state, its parameters declared as `input float`.
        observable: What is measured, on qubits `q[0]`, `q[1]`, ...
        parameters: The ansatz's input names, in the order of the parameter vector.
    """

    ansatz: str
    observable: Observable
    parameters: tuple[str, ...]

    def __init__(self, ansatz: str, observable: Observable, parameters: Sequence[str]):
        object.__setattr__(self, "ansatz", ansatz.strip() + "\n")
        object.__setattr__(self, "observable", observable)
        object.__setattr__(self, "parameters", tuple(parameters))

    def programs(self) -> list[tuple[str, list[tuple[str, float]]]]:
        """One program per group of terms, with the group it measures."""
        return [
            (self.ansatz + "\n".join(expectation_pragma(p) for p, _ in group) + "\n", group)
            for group in self.observable.groups()
        ]

    def identity(self) -> str:
        """A digest of what is computed: part of every iteration's cache key."""
        return self._identity

    @functools.cached_property
    def _identity(self) -> str:
        return hashlib.sha256(json.dumps([self.ansatz, self.observable.terms, self.observable.offset,
                                          self.parameters]).encode()).hexdigest()

    def evaluate(
        self, device: Any, points: Sequence[Sequence[float]], shots: int, client_token: str | None = None
    ) -> list[float]:
        """The cost at each point: every group's program at every point, in one batch."""
        programs = self.programs()
        batch, inputs = [], []
        for point in points:
            for source, _ in programs:
                batch.append(source)
                inputs.append(dict(zip(self.parameters, map(float, point))))
        results = iter(device.run_batch(batch, shots=shots, inputs=inputs, client_token=client_token))
        energies = []
        for _ in points:
            energy = self.observable.constant()
            for _, group in programs:
                values = next(results).values
                energy += sum(c * float(v) for (_, c), v in zip(group, values))
            energies.append(energy)
        return energies


@dataclass(frozen=True)
class FunctionCost:
    """A Python cost: `function(device, parameters, shots) -> float`."""

    function: Callable[..., float]

    def identity(self) -> str:
        """A digest of the function's source: part of every iteration's cache key."""
        return self._identity

    @functools.cached_property
    def _identity(self) -> str:
        try:
            source = inspect.getsource(self.function)
        except (OSError, TypeError):
            source = getattr(self.function, "__qualname__", repr(self.function))
        return hashlib.sha256(source.encode()).hexdigest()

    def evaluate(
        self, device: Any, points: Sequence[Sequence[float]], shots: int, client_token: str | None = None
    ) -> list[float]:
        return [float(self.function(device, np.asarray(point, dtype=float), shots)) for point in points]


def as_cost(cost: Any) -> ParametricCost | FunctionCost:
    if isinstance(cost, (ParametricCost, FunctionCost)):
        return cost
    if callable(cost):
        return FunctionCost(cost)
    raise TypeError(f"A cost is a ParametricCost or a function(device, parameters, shots); got {type(cost).__name__}.")


# -- optimisers ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GradientDescent:
    """Gradient descent on parameter-shift gradients (exact for gates generated by Paulis)."""

    learning_rate: float = 0.1
    shift: float = math.pi / 2

    def points(self, params: np.ndarray, iteration: int) -> list[np.ndarray]:
        shifted = []
        for i in range(len(params)):
            for sign in (1, -1):
                point = params.copy()
                point[i] += sign * self.shift
                shifted.append(point)
        return [params, *shifted]

    def step(self, params: np.ndarray, values: list[float], iteration: int) -> tuple[np.ndarray, float, float]:
        gradient = np.array([(values[1 + 2 * i] - values[2 + 2 * i]) / (2 * math.sin(self.shift))
                             for i in range(len(params))])
        return params - self.learning_rate * gradient, values[0], float(np.linalg.norm(gradient))


@dataclass(frozen=True)
class SPSA:
    """Simultaneous perturbation stochastic approximation: two evaluations per iteration, any number
    of parameters. Perturbations are drawn from `seed` and the iteration, so a re-run draws the same."""

    a: float = 0.2
    c: float = 0.1
    alpha: float = 0.602
    gamma: float = 0.101
    stability: float = 10.0
    seed: int = 7

    def _perturbation(self, size: int, iteration: int) -> tuple[np.ndarray, float, float]:
        delta = np.random.default_rng([self.seed, iteration]).choice([-1.0, 1.0], size=size)
        ak = self.a / (iteration + 1 + self.stability) ** self.alpha
        ck = self.c / (iteration + 1) ** self.gamma
        return delta, ak, ck

    def points(self, params: np.ndarray, iteration: int) -> list[np.ndarray]:
        delta, _, ck = self._perturbation(len(params), iteration)
        return [params, params + ck * delta, params - ck * delta]

    def step(self, params: np.ndarray, values: list[float], iteration: int) -> tuple[np.ndarray, float, float]:
        delta, ak, ck = self._perturbation(len(params), iteration)
        gradient = (values[1] - values[2]) / (2 * ck) * delta
        return params - ak * gradient, values[0], float(np.linalg.norm(gradient))


@dataclass(frozen=True)
class ScipyMinimize:
    """A SciPy minimiser ("COBYLA", "Nelder-Mead", "Powell", ...; needs scipy). Each cost evaluation
    is an iteration; a resumed run replays the checkpointed evaluations without running them again."""

    method: str = "COBYLA"
    options: dict[str, Any] = field(default_factory=dict)


def as_optimizer(optimizer: Any, learning_rate: float = 0.1) -> GradientDescent | SPSA | ScipyMinimize:
    if isinstance(optimizer, (GradientDescent, SPSA, ScipyMinimize)):
        return optimizer
    names = {"gradient-descent": lambda: GradientDescent(learning_rate), "spsa": SPSA}
    if optimizer in names:
        return names[optimizer]()
    if isinstance(optimizer, str) and optimizer.startswith("scipy:"):
        return ScipyMinimize(optimizer.split(":", 1)[1])
    raise ValueError(
        f"Unknown optimizer {optimizer!r}: use 'gradient-descent', 'spsa', 'scipy:<method>' (such as "
        "'scipy:COBYLA'), or a GradientDescent, SPSA or ScipyMinimize object."
    )


# -- checkpoints -----------------------------------------------------------------------------------


def checkpoint_path(location: str, experiment_id: str) -> str:
    return f"{str(location).rstrip('/')}/{experiment_id}.json"


def load_checkpoint(location: str, experiment_id: str) -> dict[str, Any] | None:
    """The experiment's checkpoint (Braket's `PersistedJobData` JSON), or None."""
    import fsspec

    path = checkpoint_path(location, experiment_id)
    try:
        with fsspec.open(path, "r") as f:
            return load_persisted_data(f.read())
    except FileNotFoundError:
        return None


def save_checkpoint(location: str, experiment_id: str, state: dict[str, Any]) -> None:
    path = checkpoint_path(location, experiment_id)
    text = dump_persisted_data(state, PersistedJobDataFormat.PLAINTEXT)
    if "://" not in path or path.startswith("file://"):
        target = path.removeprefix("file://")
        os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
        tmp = f"{target}.{os.getpid()}.tmp"  # a crash mid-write keeps the previous checkpoint
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, target)
        return
    import fsspec

    with fsspec.open(path, "w") as f:  # an object store replaces the object whole
        f.write(text)


# -- the loop --------------------------------------------------------------------------------------


@dataclass
class Iteration:
    iteration: int
    energy: float
    gradient_norm: float
    parameters: list[float]
    seconds: float

    def row(self) -> dict[str, Any]:
        return {"iteration": self.iteration, "energy": self.energy, "gradient_norm": self.gradient_norm,
                "parameters": json.dumps([round(p, 6) for p in self.parameters]), "seconds": round(self.seconds, 3)}


@dataclass
class LoopState:
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
    state: LoopState, optimizer: GradientDescent | SPSA, max_iterations: int, tolerance: float,
    evaluate: Callable[[int, list[np.ndarray]], list[float]], record: Callable[[LoopState, Iteration], None],
    fail_at_iteration: int | None = None,
) -> LoopState:
    """The optimisation loop both the flow and the job run; `evaluate` and `record` differ."""
    if isinstance(optimizer, ScipyMinimize):
        return _optimize_with_scipy(state, optimizer, max_iterations, tolerance, evaluate, record, fail_at_iteration)
    while not state.converged and state.next_iteration < max_iterations:
        iteration = state.next_iteration
        if fail_at_iteration is not None and iteration == fail_at_iteration:
            raise InjectedFailure(f"Failure injected before iteration {iteration}.")
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


def final_energy(state: LoopState, optimizer: Any) -> float | None:
    """The energy at the final parameters: the last iteration's, or SciPy's best evaluation."""
    if not state.history:
        return None
    return state.best_energy() if isinstance(optimizer, ScipyMinimize) else state.history[-1].energy


class _IterationLimit(Exception):
    pass


def _optimize_with_scipy(
    state: LoopState, optimizer: ScipyMinimize, max_iterations: int, tolerance: float,
    evaluate: Callable[[int, list[np.ndarray]], list[float]], record: Callable[[LoopState, Iteration], None],
    fail_at_iteration: int | None,
) -> LoopState:
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
        if fail_at_iteration is not None and index == fail_at_iteration:
            raise InjectedFailure(f"Failure injected before iteration {index}.")
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


# -- as a flow --------------------------------------------------------------------------------------


def convergence_svg(energies: Sequence[float], reference: float | None = None, width: int = 480, height: int = 200) -> str:
    """A line plot of energy by iteration (and a dashed reference line), as SVG."""
    values = list(energies) + ([reference] if reference is not None else [])
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    pad = 30

    def xy(i: int, v: float) -> str:
        x = pad + (width - 2 * pad) * (i / max(len(energies) - 1, 1))
        y = height - pad - (height - 2 * pad) * ((v - low) / span)
        return f"{x:.1f},{y:.1f}"

    line = " ".join(xy(i, v) for i, v in enumerate(energies))
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">',
             f'<rect width="{width}" height="{height}" fill="white"/>',
             f'<polyline fill="none" stroke="#1f6feb" stroke-width="2" points="{line}"/>']
    if reference is not None:
        y = xy(0, reference).split(",")[1]
        parts.append(f'<line x1="{pad}" x2="{width - pad}" y1="{y}" y2="{y}" stroke="#d1242f" stroke-dasharray="4"/>')
    parts += [f'<text x="{pad}" y="15" font-size="12">{high:.6f}</text>',
              f'<text x="{pad}" y="{height - 8}" font-size="12">{low:.6f} (iteration {len(energies) - 1})</text>',
              "</svg>"]
    return "".join(parts)


def summary_markdown(state: LoopState, optimizer: Any, experiment_id: str, evaluated: int,
                     reference_energy: float | None, device: Any, shots: int) -> str:
    """A run's summary: the convergence plot (an inline SVG image) and the final figures."""
    energies = [h.energy for h in state.history]
    image = base64.b64encode(convergence_svg(energies, reference_energy).encode()).decode()
    energy = final_energy(state, optimizer)
    lines = [
        f"# Variational run `{experiment_id}`", "",
        f"![convergence](data:image/svg+xml;base64,{image})", "",
        f"Energy by iteration: `{sparkline(energies)}`", "",
        "| | |", "|---|---|",
        f"| final energy | {energy:.8f} |",
        *([f"| reference energy | {reference_energy:.8f} |",
           f"| error | {energy - reference_energy:.2e} |"] if reference_energy is not None else []),
        f"| iterations | {len(energies)} ({evaluated} evaluated in this run) |",
        f"| converged | {state.converged} |",
        f"| device | `{device.device_arn}` |",
        f"| shots | {shots} |",
        f"| parameters | `{json.dumps([round(float(p), 6) for p in state.parameters])}` |",
    ]
    return "\n".join(lines)


class _Publisher:
    """Runs checkpoint writes and artifact API calls in order on a thread of their own.

    An iteration on a simulator takes about as long as one of those calls, so the loop hands them
    over instead of waiting for them. The thread runs in a copy of the caller's context, so the
    artifacts belong to the caller's flow run. The first error stops the publishing; the next
    `submit` raises it (so a failing checkpoint store stops the loop early), and so does `close`.
    Later jobs still run: an artifact call that failed does not cost the checkpoints after it.
    """

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[Callable[[], Any] | None] = queue.SimpleQueue()
        self._error: Exception | None = None
        self._thread = threading.Thread(target=contextvars.copy_context().run, args=(self._work,),
                                        name="variational-publisher", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                job()
            except Exception as error:
                self._error = self._error or error

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def submit(self, job: Callable[[], Any]) -> None:
        """Queues `job`; raises the error of an earlier one."""
        self._raise_error()
        self._jobs.put(job)

    def close(self) -> None:
        """Waits for every queued job; raises the first error."""
        self._jobs.put(None)
        self._thread.join()
        self._raise_error()


class _ProgressArtifact:
    """A progress artifact created and updated through a `_Publisher`."""

    def __init__(self, publisher: _Publisher, experiment_id: str, percent: float) -> None:
        self._publisher = publisher
        self._id: Any = None
        publisher.submit(functools.partial(self._create, f"{experiment_id}-progress", f"Iterations of {experiment_id}",
                                           percent))

    def _create(self, key: str, description: str, percent: float) -> None:
        self._id = publish_progress(percent, key, description)

    def update(self, percent: float) -> None:
        """Queues an update; it runs after the creation, on the publisher's thread."""
        self._publisher.submit(lambda: update_progress(self._id, percent))


def sparkline(values: Sequence[float]) -> str:
    bars = "▁▂▃▄▅▆▇█"
    low, high = min(values), max(values)
    return "".join(bars[int((v - low) / ((high - low) or 1) * (len(bars) - 1))] for v in values)


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
    table_every: int = 5,
    reference_energy: float | None = None,
    fail_at_iteration: int | None = None,
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
        table_every: Refresh the table artifact every this many iterations.
        reference_energy: Drawn in the convergence plot (an exact energy, say).
        fail_at_iteration: Raise before this iteration (to show resuming).

    Returns:
        `energy` (at the last iteration's point; SciPy: the best evaluation), `parameters` (after
        the last update: where a further run would start), `iterations` (in all runs),
        `evaluated_iterations` (in this run), `converged`, `experiment_id`.
    """
    if artifact_key(experiment_id) != experiment_id:
        raise ValueError(f"experiment_id {experiment_id!r} must be lowercase letters, digits and hyphens "
                         f"(try {artifact_key(experiment_id)!r}).")
    logger = get_run_logger()
    cost = as_cost(cost)
    chosen = as_optimizer(optimizer, learning_rate)
    device = device or BraketDevice()
    location = checkpoint_location or str(package_home() / "experiments")
    saved = load_checkpoint(location, experiment_id)
    state = LoopState.from_checkpoint(saved) if saved else LoopState(np.asarray(initial_parameters, dtype=float))
    if saved:
        logger.info("Resuming experiment %s after iteration %d from %s", experiment_id, state.next_iteration - 1,
                    checkpoint_path(location, experiment_id))
    with shared_sync_client():
        publisher = _Publisher()
        progress = _ProgressArtifact(publisher, experiment_id, 100.0 * state.next_iteration / max_iterations)
        evaluated: set[int] = set()  # filled by the iteration task runs that were not answered from the cache
        published_rows = 0

        def evaluate(iteration: int, points: list[np.ndarray]) -> list[float]:
            # Quoted, the cost and the device reach the task as they are: Prefect does not walk their fields
            # for upstream results on every call.
            return evaluate_iteration(quote(cost), quote(device), [p.tolist() for p in points], shots, experiment_id,
                                      iteration)

        def refresh_table() -> None:
            nonlocal published_rows
            published_rows = len(state.history)
            publisher.submit(functools.partial(
                publish_table, [h.row() for h in state.history], f"{experiment_id}-iterations",
                f"Iterations of {experiment_id}"))

        reported = time.monotonic()

        def record(current: LoopState, step: Iteration) -> None:
            nonlocal reported
            publisher.submit(functools.partial(save_checkpoint, location, experiment_id, current.to_checkpoint()))
            # A progress update and a log line each cost the API a write, and the table holds every row: on
            # a simulator, where iterations take milliseconds, a second apart is live enough.
            if time.monotonic() - reported >= PROGRESS_INTERVAL_SECONDS:
                progress.update(100.0 * (step.iteration + 1) / max_iterations)
                logger.info("Iteration %d: energy %.8f, gradient norm %.3g", step.iteration, step.energy,
                            step.gradient_norm)
                reported = time.monotonic()
            if (step.iteration + 1) % table_every == 0:
                refresh_table()

        token = _evaluated_iterations.set(evaluated)
        try:
            optimize(state, chosen, max_iterations, tolerance, evaluate, record, fail_at_iteration)
            progress.update(100.0)
            if len(state.history) != published_rows:
                refresh_table()
            if state.history:
                logger.info("Finished after iteration %d: energy %.8f, %d iteration(s) evaluated in this run, "
                            "converged: %s", state.history[-1].iteration, final_energy(state, chosen), len(evaluated),
                            state.converged)
                summary = summary_markdown(state, chosen, experiment_id, len(evaluated), reference_energy, device, shots)
                publisher.submit(functools.partial(publish_markdown, summary, f"{experiment_id}-summary",
                                                   f"Summary of {experiment_id}"))
        except BaseException as failure:
            # The checkpoints of the finished iterations still go out, for the next run to resume from.
            try:
                publisher.close()
            except Exception as error:
                if error is not failure:
                    logger.error("Publishing checkpoints and artifacts failed as well: %r", error)
            raise
        finally:
            _evaluated_iterations.reset(token)
        publisher.close()
    return {
        "experiment_id": experiment_id,
        "energy": final_energy(state, chosen),
        "parameters": [float(p) for p in state.parameters],
        "iterations": len(state.history),
        "evaluated_iterations": len(evaluated),
        "converged": state.converged,
    }


# The iterations `run_variational` had evaluated rather than answered from the cache. Counted by the task
# itself: telling from the returned state would need the state's result, a trip through Prefect's event loop
# thread per iteration.
_evaluated_iterations: contextvars.ContextVar[set[int] | None] = contextvars.ContextVar(
    "prefect_braket_evaluated_iterations", default=None)


def _iteration_key(context: Any, parameters: dict[str, Any]) -> str:
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


# -- inside a hybrid job --------------------------------------------------------------------------


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
    from prefect_braket.jobs import (
        get_job_device_arn,
        load_job_checkpoint,
        log_metric,
        save_job_checkpoint,
    )

    cost = as_cost(cost)
    chosen = as_optimizer(optimizer, learning_rate)
    device = device or BraketDevice(device_arn=get_job_device_arn())
    try:
        state = LoopState.from_checkpoint(load_job_checkpoint(job_name=resume_from_job))
    except FileNotFoundError:
        state = LoopState(np.asarray(initial_parameters, dtype=float))

    def record(current: LoopState, step: Iteration) -> None:
        log_metric(metric_name="energy", value=step.energy, iteration_number=step.iteration)
        log_metric(metric_name="gradient_norm", value=step.gradient_norm, iteration_number=step.iteration)
        save_job_checkpoint(current.to_checkpoint())

    optimize(state, chosen, max_iterations, tolerance, lambda _, points: cost.evaluate(device, points, shots), record)
    return {"energy": final_energy(state, chosen),
            "parameters": [float(p) for p in state.parameters], "iterations": len(state.history),
            "converged": state.converged}


__all__ = [
    "FunctionCost", "GradientDescent", "InjectedFailure", "Observable", "ParametricCost", "SPSA", "ScipyMinimize",
    "run_variational", "run_variational_in_job", "evaluate_iteration",
]
