"""Results of quantum tasks, under the names Braket users know.

`TaskResult.from_gate_model(document)` reads Braket's `GateModelTaskResult` (the `results.json`
of a task on AWS, or what a local simulator returns) and offers `values` (the program's result
types, in order), `measurement_counts`, `measurement_probabilities` and `measurements` (numpy),
as Braket's `GateModelQuantumTaskResult` does. With shots, result types are computed from the
measurements, as Braket's SDK computes them: the simulators and QPUs return only bits.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from prefect_braket.quantum.programs import Program

PAULI_LIKE = {"x", "y", "z", "h"}


def _complex_array(value: Any) -> np.ndarray:
    array = np.asarray(value)
    # JSON carries complex numbers as [re, im] pairs.
    if array.dtype != complex and array.ndim >= 1 and array.shape[-1] == 2:
        array = array[..., 0] + 1j * array[..., 1]
    return array.astype(complex)


def _observable_eigenvalues(observable: list, bits: np.ndarray) -> np.ndarray:
    """Per-shot eigenvalues of a tensor product of Pauli-like factors, from the bits measured
    after the basis change the device applied for it (bit 0 → +1, bit 1 → -1)."""
    values = np.ones(bits.shape[0])
    for factor, column in zip(observable, bits.T, strict=True):
        if factor.lower() in PAULI_LIKE:
            values = values * (1 - 2 * column)
        elif factor.lower() != "i":
            raise ValueError(f"Unknown observable factor {factor!r}.")
    return values


def _counts(measurements: np.ndarray) -> Counter:
    """Each distinct row of bits as a string, with how often it came, in the order rows first came
    (as Braket's SDK counts them); one string per distinct row, not per shot."""
    rows, first, number = np.unique(measurements, axis=0, return_index=True, return_counts=True)
    return Counter({"".join(map(str, rows[i].tolist())): int(number[i]) for i in np.argsort(first)})


def _sampled_value(result_type: dict[str, Any], measurements: np.ndarray, measured: list[int]) -> Any:
    kind = result_type["type"].lower()
    if result_type.get("per_qubit"):
        single = {**result_type, "per_qubit": False}
        values = [_sampled_value({**single, "targets": [q]}, measurements, measured) for q in measured]
        return np.asarray(values) if kind == "sample" else values
    targets = result_type.get("targets")
    targets = list(targets) if targets is not None else list(measured)
    columns = measurements[:, [measured.index(t) for t in targets]]
    if kind == "probability":
        weights = 2 ** np.arange(len(targets) - 1, -1, -1)
        indices = columns @ weights
        return np.bincount(indices, minlength=2 ** len(targets)) / len(measurements)
    observable = result_type.get("observable") or ["z"]
    if observable == ["hermitian"]:
        raise ValueError(
            "A Hermitian observable with shots > 0 cannot be estimated from bits here: run it with shots=0.")
    if len(observable) == 1 and len(targets) > 1:
        observable = observable * len(targets)
    eigenvalues = _observable_eigenvalues(observable, columns)
    if kind == "expectation":
        return float(np.mean(eigenvalues))
    if kind == "variance":
        return float(np.var(eigenvalues))
    if kind == "sample":
        return eigenvalues
    raise ValueError(f"Result type {result_type['type']!r} needs shots=0.")


def _exact_value(result_type: dict[str, Any], value: Any) -> Any:
    kind = result_type["type"].lower()
    if kind in ("statevector", "densitymatrix"):
        return _complex_array(value)
    if kind == "amplitude":
        return {k: complex(*v) if isinstance(v, (list, tuple)) else complex(v) for k, v in value.items()}
    if kind in ("probability", "sample"):
        return np.asarray(value)
    return value


@dataclass
class TaskResult:
    """One quantum task's result, shaped like Braket's `GateModelQuantumTaskResult`.

    Example:
        ```python
        result = device.run(program, shots=100)
        result.values[0]              # the first result type's value (an expectation, say)
        result.measurement_counts     # Counter({"00": 52, "11": 48})
        ```
    """

    task_arn: str
    device_arn: str
    shots: int
    values: list[Any]
    result_types: list[dict[str, Any]]
    measurements: np.ndarray | None
    measured_qubits: list[int]
    measurement_counts: Counter
    measurement_probabilities: dict[str, float]
    task_metadata: dict[str, Any]
    additional_metadata: dict[str, Any]
    queue_priority: str = "Normal"
    cost_usd: float = 0.0
    created_at: datetime | None = None
    ended_at: datetime | None = None
    execution_duration_ms: float | None = None
    outputs: list[dict[str, Any]] | None = field(default=None)

    @classmethod
    def from_gate_model(
        cls, document: dict[str, Any], task_arn: str, device_arn: str, program: Program | None = None, **extra: Any
    ) -> "TaskResult":
        """Reads a `GateModelTaskResult` document (a dict, as in its JSON).

        `program` is the program that ran; by default the one recorded in the document.
        """
        if program is None:
            action = (document.get("additionalMetadata") or {}).get("action") or {}
            program = Program(action["source"], action.get("inputs") or {}) if action.get("source") else None
        metadata = document.get("taskMetadata") or {}
        shots = int(metadata.get("shots") or 0)
        measured = list(document.get("measuredQubits") or [])
        raw = document.get("measurements")
        measurements = np.asarray(raw, dtype=np.int8) if raw else None
        counts: Counter = Counter()
        if measurements is not None:
            counts = _counts(measurements)
        elif document.get("measurementProbabilities") and shots:
            counts = Counter({k: int(round(p * shots)) for k, p in document["measurementProbabilities"].items()})
        total = sum(counts.values())
        probabilities = {k: v / total for k, v in counts.items()} if total else dict(
            document.get("measurementProbabilities") or {}
        )
        result_types, values = [], []
        entries = document.get("resultTypes") or []
        if entries and all("value" in e for e in entries):  # exact values, from a simulator with shots=0
            for entry in entries:
                spec = dict(entry["type"])
                spec["type"] = str(getattr(spec["type"], "value", spec["type"])).lower()
                result_types.append({"type": spec, "value": _exact_value(spec, entry["value"])})
        elif measurements is not None and program is not None:  # bits only: compute as Braket's SDK does
            for spec in program.result_types():
                result_types.append({"type": spec, "value": _sampled_value(spec, measurements, measured)})
        values = [r["value"] for r in result_types]
        extra.setdefault("execution_duration_ms", (
            ((document.get("additionalMetadata") or {}).get("simulatorMetadata") or {}).get("executionDuration")
        ))
        return cls(
            task_arn=task_arn, device_arn=device_arn, shots=shots, values=values, result_types=result_types,
            measurements=measurements, measured_qubits=measured, measurement_counts=counts,
            measurement_probabilities=probabilities, task_metadata=dict(metadata),
            additional_metadata=dict(document.get("additionalMetadata") or {}),
            outputs=document.get("outputs"), **extra,
        )
