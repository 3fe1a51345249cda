"""What the endpoint keeps of each quantum task and job, and the answers Braket gives about them.

A `TaskRecord` is the whole task: the endpoint runs it. A `JobRecord` is the endpoint's side of a
job that runs on the embedded engine: the engine keeps the job's state (`LocalEngine.get_job`), the
record what was asked (the CreateJob request, echoed by GetJob) and how far its log and
checkpoints have been shipped. A `Registry` finds either by ARN and by the client token that
created it; jobs are found also by the job token their tasks carry.

Records are mutated under the shared lock (`shared.SharedState.lock`), a job's shipping state
under the job's own `lock` as well.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Generic, TypeVar

from prefect_braket.core.arns import resource_region
from prefect_braket.endpoint.devices import OPENQASM_ACTION
from prefect_braket.endpoint.errors import NotFound
from prefect_braket.quantum.programs import Program

ACCOUNT = "123456789012"
ECHOED_JOB_FIELDS = ("jobName", "roleArn", "algorithmSpecification", "instanceConfig", "outputDataConfig",
                     "checkpointConfig", "stoppingCondition", "hyperParameters", "deviceConfig", "tags",
                     "inputDataConfig", "associations")
JOB_TIMES = ("createdAt", "startedAt", "endedAt")
EVENTS_SHOWN = 20
POSITION_CAP, SIZE_CAP = 2000, 4000  # queue positions and sizes beyond these show as ">2000", ">4000"


def now() -> str:
    """A task's timestamps, as ISO 8601 in UTC."""
    return datetime.now(timezone.utc).isoformat()


def capped(count: int, cap: int) -> str:
    """A queue position or size as Braket shows it: a string, large ones capped."""
    return f">{cap}" if count > cap else str(count)


def task_arn(region: str, task_id: str) -> str:
    return f"arn:aws:braket:{region}:{ACCOUNT}:quantum-task/{task_id}"


def job_arn(region: str, job_id: str) -> str:
    return f"arn:aws:braket:{region}:{ACCOUNT}:job/{job_id}"


@dataclass(eq=False)  # a record is itself, not its value: queues find and remove it by identity
class TaskRecord:
    """A quantum task, from CreateQuantumTask to its end."""

    arn: str
    device_arn: str
    shots: int
    output_bucket: str
    output_directory: str
    program: Program | None  # dropped when the task ends: a long-lived endpoint keeps no sources
    priority: bool  # its job runs on its device: it waits in the Priority queue
    device_parameters: str = "{}"
    tags: dict[str, str] = field(default_factory=dict)
    job_arn: str | None = None
    status: str = "QUEUED"
    created_at: str = field(default_factory=now)
    ended_at: str | None = None
    failure_reason: str | None = None

    def end(self, status: str, failure_reason: str | None = None) -> None:
        self.status, self.ended_at, self.failure_reason, self.program = status, now(), failure_reason, None

    def answer(self) -> dict[str, Any]:
        """GetQuantumTask's answer (without `queueInfo`); what SearchQuantumTasks filters and shows."""
        answer = {"quantumTaskArn": self.arn, "status": self.status, "deviceArn": self.device_arn,
                  "deviceParameters": self.device_parameters, "shots": self.shots,
                  "outputS3Bucket": self.output_bucket, "outputS3Directory": self.output_directory,
                  "createdAt": self.created_at, "tags": self.tags, "jobArn": self.job_arn,
                  # Braket's SDK reads the action's type to tell a FAILED program set from a FAILED task.
                  "actionMetadata": {"actionType": OPENQASM_ACTION},
                  "endedAt": self.ended_at, "failureReason": self.failure_reason}
        return {key: value for key, value in answer.items() if value is not None}


@dataclass(eq=False)
class JobRecord:
    """A job on the embedded engine, as Braket shows it, and what of it is in CloudWatch and S3."""

    arn: str
    local_arn: str  # the engine's ARN for it
    job_token: str  # AMZN_BRAKET_JOB_TOKEN: its tasks carry it to get their device's priority
    request: dict[str, Any]  # the CreateJob request, in Braket's shape
    device_arn: str
    log_stream: str
    log_cursor: Any = None  # where the next log read starts; None until the first lines are shipped
    shipped_checkpoints: dict[str, int] = field(default_factory=dict)  # file -> mtime_ns of the copy in S3
    checkpoint_writes: int = 0
    synced: bool = False  # ended, and all of it (output too) shipped: nothing more to do
    killed: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)  # one shipping at a time

    @property
    def checkpoint_uri(self) -> str | None:
        return self.request.get("checkpointConfig", {}).get("s3Uri")

    @property
    def output_uri(self) -> str:
        return self.request["outputDataConfig"]["s3Path"]

    def answer(self, meta: dict[str, Any], queue_info: bool) -> dict[str, Any]:
        """GetJob's answer, from the request and the engine's metadata (`LocalEngine.get_job`)."""
        answer = {key: self.request[key] for key in ECHOED_JOB_FIELDS if key in self.request}
        events = [{**e, "timeOfEvent": e["timeOfEvent"].timestamp()} for e in meta["events"]]
        answer.update(jobArn=self.arn, status=meta["status"], events=events[-EVENTS_SHOWN:])
        if queue_info:
            answer["queueInfo"] = meta["queueInfo"]
        answer.update({key: meta[key].timestamp() for key in JOB_TIMES if key in meta})
        answer.update({key: meta[key] for key in ("failureReason", "billableDuration") if key in meta})
        return answer

    def summary(self, meta: dict[str, Any]) -> dict[str, Any]:
        """What SearchJobs filters and shows of it."""
        return {"status": meta["status"], "jobArn": self.arn, "jobName": meta["jobName"], "device": self.device_arn,
                "tags": meta.get("tags") or {}, **{key: meta[key].isoformat() for key in JOB_TIMES if key in meta}}


Record = TypeVar("Record", TaskRecord, JobRecord)


class Registry(Generic[Record]):
    """The records of one kind by ARN, and the ARN each client token created: a Create* call
    repeated with its client token answers the first call's ARN, as Braket's does."""

    def __init__(self, kind: str) -> None:
        self.kind = kind  # "Quantum task", "Job": for NotFound's message
        self.by_arn: dict[str, Record] = {}
        self.by_client_token: dict[str, str] = {}

    def get(self, arn: str) -> Record:
        record = self.by_arn.get(arn)
        if record is None:
            raise NotFound(f"{self.kind} {arn} not found.")
        return record

    def created_by(self, client_token: str | None) -> str | None:
        """The ARN this client token created, if any."""
        return self.by_client_token.get(client_token) if client_token else None

    def add(self, record: Record, client_token: str | None) -> None:
        self.by_arn[record.arn] = record
        if client_token:
            self.by_client_token[client_token] = record.arn

    def in_region(self, region: str) -> list[Record]:
        """The records a Search* call to `region` sees: its own."""
        return [r for arn, r in self.by_arn.items() if resource_region(arn) == region]


class JobRegistry(Registry[JobRecord]):
    """Jobs, found also by the job token that their tasks carry."""

    def __init__(self) -> None:
        super().__init__("Job")
        self.by_job_token: dict[str, str] = {}

    def add(self, record: JobRecord, client_token: str | None) -> None:
        super().add(record, client_token)
        self.by_job_token[record.job_token] = record.arn

    def holding(self, job_token: str | None) -> JobRecord | None:
        """The job a token was issued to; None for a token this endpoint did not issue."""
        return self.by_arn.get(self.by_job_token.get(job_token or "", ""))
