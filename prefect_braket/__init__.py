"""prefect-braket: Amazon Braket Hybrid Jobs as Prefect flows, with an embedded local engine.

Names are imported on first use, so that a job process importing `prefect_braket.jobs` does
not pay for importing Prefect.
"""

from __future__ import annotations

from prefect_braket.core.lazy import lazy_exports

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
    "PrefectBraketError": "prefect_braket.core.errors",
    "JobFailedError": "prefect_braket.core.errors",
    "CredentialsInJobError": "prefect_braket.orchestration.packaging",
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
    "run_quantum_sweep": "prefect_braket.orchestration.sweeps",
    "ClusterUnreachableError": "prefect_braket.orchestration.sweeps",
    "submit_job": "prefect_braket.orchestration.submission",
    "wait_for_job": "prefect_braket.orchestration.waiting",
    "wait_for_job_async": "prefect_braket.orchestration.waiting",
    "get_job_result": "prefect_braket.orchestration.waiting",
    "get_job_metrics": "prefect_braket.orchestration.waiting",
    "cancel_job": "prefect_braket.orchestration.waiting",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
