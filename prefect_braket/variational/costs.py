"""What a variational loop minimises: a parametric program's expectation, or a Python function.

A cost has two methods the loop relies on: `evaluate(device, points, shots, client_token)`, the
cost at each point of one iteration, and `identity()`, a digest of what is computed, which is part
of every iteration's cache key (so a changed ansatz or function never gets an old answer back).
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from prefect_braket.variational.observables import Observable, expectation_pragma


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
                inputs.append(dict(zip(self.parameters, map(float, point), strict=True)))
        results = iter(device.run_batch(batch, shots=shots, inputs=inputs, client_token=client_token))
        energies = []
        for _ in points:
            energy = self.observable.constant()
            for _, group in programs:
                values = next(results).values
                energy += sum(c * float(v) for (_, c), v in zip(group, values, strict=True))
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


Cost = ParametricCost | FunctionCost


def as_cost(cost: Any) -> Cost:
    """`cost` as a cost object: a plain function becomes a `FunctionCost`."""
    if isinstance(cost, (ParametricCost, FunctionCost)):
        return cost
    if callable(cost):
        return FunctionCost(cost)
    raise TypeError(f"A cost is a ParametricCost or a function(device, parameters, shots); got {type(cost).__name__}.")
