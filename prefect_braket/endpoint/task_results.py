"""A quantum task's `results.json`, as Braket's service writes it: a `GateModelTaskResult` that
Braket's schema (`braket.task_result`) and SDK read.

The local simulators return documents that only their own caller can read: with shots, the
result types without their values (and the bits as strings); without shots, an empty list of
measurements, which the schema refuses (it takes at least one shot, or none at all). Braket's
service writes the values of the result types it was asked for in both cases; with shots it
computes them from the bits, as here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from prefect_braket.endpoint.devices import DeviceModel
from prefect_braket.endpoint.records import TaskRecord
from prefect_braket.quantum.simulators import LocalSimulator

SIMULATOR_METADATA_HEADER = {"name": "braket.task_result.simulator_metadata", "version": "1"}


def result_document(record: TaskRecord, device: DeviceModel) -> dict[str, Any]:
    """Runs a task on its device's simulator; returns its `GateModelTaskResult` as Braket writes it."""
    _, document, elapsed_ms = LocalSimulator.run(device.local_arn, record.program, record.shots)
    document["taskMetadata"].update(id=record.arn, deviceId=device.arn)
    if record.shots:
        bits = np.asarray(document["measurements"], dtype=np.int8)
        document["measurements"] = bits.tolist()
        document["resultTypes"] = [{"type": spec, "value": sampled_value(spec, bits, document["measuredQubits"])}
                                   for spec in document.get("resultTypes") or []]
    else:
        document["measurements"] = None
    document["additionalMetadata"]["simulatorMetadata"] = {
        "braketSchemaHeader": SIMULATOR_METADATA_HEADER, "executionDuration": int(elapsed_ms)}
    return document


def sampled_value(spec: dict[str, Any], bits: np.ndarray, measured_qubits: list[int]) -> Any:
    """A result type's value from the bits measured, as Braket computes it: the bits come after
    the basis change the simulator applied for the observable, so each shot's bits index one of
    the observable's eigenvalues. A result type without targets has one value per measured qubit."""
    targets = spec.get("targets")
    if spec["type"] != "probability" and targets is None:
        return [sampled_value({**spec, "targets": [qubit]}, bits, measured_qubits) for qubit in measured_qubits]
    columns = bits if targets is None else bits[:, [measured_qubits.index(t) for t in targets]]
    indices = columns @ (2 ** np.arange(columns.shape[1] - 1, -1, -1))
    if spec["type"] == "probability":
        return (np.bincount(indices, minlength=2 ** columns.shape[1]) / len(bits)).tolist()
    samples = _eigenvalues(spec["observable"], targets)[indices]
    if spec["type"] == "expectation":
        return float(np.mean(samples))
    if spec["type"] == "variance":
        return float(np.var(samples))
    if spec["type"] == "sample":
        return samples.tolist()
    raise ValueError(f"Result type {spec['type']!r} has no value with shots > 0; run it with shots=0.")


def _eigenvalues(observable: list[Any], targets: list[int]) -> np.ndarray:
    """The observable's eigenvalues in the order of the basis the simulator rotated it to: the
    simulator's own observable gives both, whatever the observable (Paulis, tensor products,
    Hermitian matrices). An expectation is the one way in to it for every observable result type."""
    from braket.default_simulator.result_types import from_braket_result_type
    from braket.ir.jaqcd import Expectation

    result_type = from_braket_result_type(Expectation(observable=observable, targets=targets))
    return np.real(result_type.observable.eigenvalues)
