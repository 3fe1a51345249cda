"""prefect-braket: Amazon Braket Hybrid Jobs as Prefect flows, with an embedded local engine.

Names are imported on first use, so that a job process importing `prefect_braket.jobs` does
not pay for importing Prefect.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "hybrid_job": "prefect_braket.orchestration.decorator",
    "HybridJob": "prefect_braket.orchestration.handle",
    "HybridJobQueueInfo": "prefect_braket.orchestration.handle",
    "JobSpec": "prefect_braket.core.spec",
    "CheckpointConfig": "prefect_braket.core.spec",
    "InstanceConfig": "prefect_braket.core.spec",
    "OutputDataConfig": "prefect_braket.core.spec",
    "StoppingCondition": "prefect_braket.core.spec",
    "JobFailedError": "prefect_braket.core.errors",
    "JobNotFoundError": "prefect_braket.core.errors",
    "JobStateError": "prefect_braket.core.errors",
    "UnsafeArchiveError": "prefect_braket.core.archive",
    "ArchiveTooLargeError": "prefect_braket.core.archive",
    "LocalEngine": "prefect_braket.backends.local.engine",
    "BraketHybridJob": "prefect_braket.orchestration.blocks",
    "BraketHybridJobRun": "prefect_braket.orchestration.blocks",
    "BraketDevice": "prefect_braket.orchestration.blocks",
    "Budget": "prefect_braket.quantum.cost",
    "BudgetExceededError": "prefect_braket.jobs.budget",
    "PriceTable": "prefect_braket.quantum.cost",
    "DeviceCapabilityError": "prefect_braket.quantum.devices",
    "DeviceUnavailableError": "prefect_braket.quantum.devices",
    "PriorityWarning": "prefect_braket.quantum.devices",
    "Program": "prefect_braket.quantum.programs",
    "to_program": "prefect_braket.quantum.programs",
    "TaskResult": "prefect_braket.quantum.results",
    "run_quantum_task": "prefect_braket.orchestration.quantum_tasks",
    "run_quantum_batch": "prefect_braket.orchestration.quantum_tasks",
    "submit_job": "prefect_braket.orchestration.tasks",
    "wait_for_job": "prefect_braket.orchestration.tasks",
    "wait_for_job_async": "prefect_braket.orchestration.tasks",
    "get_job_result": "prefect_braket.orchestration.tasks",
    "get_job_metrics": "prefect_braket.orchestration.tasks",
    "cancel_job": "prefect_braket.orchestration.tasks",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'prefect_braket' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
