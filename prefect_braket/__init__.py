"""prefect-braket: Amazon Braket Hybrid Jobs as Prefect flows, with an embedded local engine.

Names are imported on first use, so that a job process importing `prefect_braket.jobs` does
not pay for importing Prefect.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "hybrid_job": "prefect_braket.decorator",
    "HybridJob": "prefect_braket.job_handle",
    "HybridJobQueueInfo": "prefect_braket.job_handle",
    "JobSpec": "prefect_braket.job_spec",
    "CheckpointConfig": "prefect_braket.job_spec",
    "InstanceConfig": "prefect_braket.job_spec",
    "OutputDataConfig": "prefect_braket.job_spec",
    "StoppingCondition": "prefect_braket.job_spec",
    "JobFailedError": "prefect_braket.backend",
    "JobNotFoundError": "prefect_braket.backend",
    "JobStateError": "prefect_braket.backend",
    "UnsafeArchiveError": "prefect_braket.archive",
    "ArchiveTooLargeError": "prefect_braket.archive",
    "LocalEngine": "prefect_braket.local_engine",
    "BraketHybridJob": "prefect_braket.blocks",
    "BraketHybridJobRun": "prefect_braket.blocks",
    "BraketDevice": "prefect_braket.blocks",
    "Budget": "prefect_braket.cost",
    "BudgetExceededError": "prefect_braket.cost",
    "PriceTable": "prefect_braket.cost",
    "DeviceCapabilityError": "prefect_braket.devices",
    "DeviceUnavailableError": "prefect_braket.devices",
    "PriorityWarning": "prefect_braket.devices",
    "Program": "prefect_braket.programs",
    "to_program": "prefect_braket.programs",
    "TaskResult": "prefect_braket.results",
    "run_quantum_task": "prefect_braket.quantum_tasks",
    "run_quantum_batch": "prefect_braket.quantum_tasks",
    "submit_job": "prefect_braket.tasks",
    "wait_for_job": "prefect_braket.tasks",
    "wait_for_job_async": "prefect_braket.tasks",
    "get_job_result": "prefect_braket.tasks",
    "get_job_metrics": "prefect_braket.tasks",
    "cancel_job": "prefect_braket.tasks",
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
