"""Trouble on demand (`Faults`), and the counts of what happened (`Stats`), both behind
`/_endpoint/` control routes.

Both are plain data guarded by the endpoint's one lock (`shared.SharedState.lock`): whoever
reads or spends a fault, or counts, holds it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prefect_braket.endpoint.devices import DeviceModel


@dataclass
class Faults:
    """Trouble on demand. Set with `POST /_endpoint/faults` (JSON of these fields; unset ones reset).

    Args:
        throttle_rate: The share of Braket calls answered `ThrottlingException` (429).
        error_rate: The share answered `InternalServiceException` (500).
        latency_ms: Added to every Braket call.
        offline_devices: Device ARNs reported OFFLINE (new tasks and jobs refused, queued ones wait).
        job_deaths: Job instances to kill, each entry once: `{"job_name_prefix": "", "after_seconds": 0,
            "after_checkpoints": 1}` kills the first job whose name starts so, once it has run that
            long and written that many checkpoints. The job ends FAILED with an
            `InternalServerError` reason; the checkpoints it had written are in S3.
        missing_results: How many of the next tasks to complete never get their `results.json`.
        seed: Makes the draws repeatable.
    """

    throttle_rate: float = 0.0
    error_rate: float = 0.0
    latency_ms: float = 0.0
    offline_devices: list[str] = field(default_factory=list)
    job_deaths: list[dict[str, Any]] = field(default_factory=list)
    missing_results: int = 0
    seed: int | None = None

    def device_status(self, device: DeviceModel) -> str:
        """The status the device shows: its own, unless these faults take an ONLINE one offline."""
        return "OFFLINE" if device.status == "ONLINE" and device.arn in self.offline_devices else device.status

    def take_job_death(self, job_name: str, running_seconds: float, checkpoint_writes: int) -> bool:
        """Whether a job running so is to die now; the entry that says so is spent."""
        death = next((d for d in self.job_deaths if job_name.startswith(d.get("job_name_prefix", ""))
                      and running_seconds >= float(d.get("after_seconds", 0))
                      and checkpoint_writes >= int(d.get("after_checkpoints", 0))), None)
        if death is not None:
            self.job_deaths.remove(death)
        return death is not None

    def take_missing_result(self) -> bool:
        """Whether the task completing now loses its `results.json`; one of `missing_results` is spent."""
        if self.missing_results <= 0:
            return False
        self.missing_results -= 1
        return True


@dataclass
class Stats:
    """What happened, for `GET /_endpoint/stats`: Braket calls, the faults they met, tasks and jobs."""

    calls: int = 0
    throttled: int = 0
    failed: int = 0
    tasks_created: int = 0
    tasks_deduplicated: int = 0
    results_dropped: int = 0
    jobs_created: int = 0
    jobs_deduplicated: int = 0
    jobs_killed: int = 0
