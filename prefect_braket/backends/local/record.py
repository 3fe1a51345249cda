"""A job's record, typed: what the embedded engine keeps of one job in its `job.json`.

The file is GetJob-shaped, in Braket's own names, so that whoever reads Braket's API reads it as
it is; the engine's own part (`EngineState`) is under `_engine`, which GetJob never shows.
`JobRecord.from_json` is the one place the file's content is taken in: each value is checked as
it is read, and what is not as the engine wrote it raises `JobStateError` naming the file, what
is wrong and the fix, rather than a KeyError or a TypeError somewhere later. `to_json` writes
the same format back, and `get_job` is what `LocalEngine.get_job` answers, its times datetimes.

The record holds values only; where a job's files are is the store's (`store.JobStore`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, TypeVar

from prefect_braket.backends.base import INSTANCE_FAILURE_PREFIX
from prefect_braket.core.errors import JobStateError
from prefect_braket.core.spec import InstanceConfig, StoppingCondition
from prefect_braket.core.states import JOB_STATES, TERMINAL_STATES

MAX_EVENTS = 20  # GetJob keeps the last 20
RESERVATION = "RESERVATION_TIME_WINDOW_ARN"  # the association a reservation makes (Braket's type name)

T = TypeVar("T")


def now() -> datetime:
    return datetime.now(timezone.utc)


def damaged(path: Path, problem: str, fix: str) -> JobStateError:
    """The error for one of the engine's files that is not as the engine wrote it."""
    return JobStateError(f"The embedded engine's file {path} is damaged: {problem}. {fix}")


def damaged_record(path: Path, problem: str) -> JobStateError:
    """The error for a job.json the engine cannot take: only that job is lost, and only its directory."""
    return damaged(path, problem,
                   f"Remove the job's directory {path.parent} or restore its job.json; other jobs are unaffected.")


@dataclass
class JobEvent:
    """One of GetJob's `events`: what happened to the job, and when."""

    event_type: str
    time_of_event: datetime
    message: str = ""


@dataclass(frozen=True)
class ScriptMode:
    """GetJob's `algorithmSpecification.scriptModeConfig`: the job's code and how it starts."""

    entry_point: str
    s3_uri: str  # the source archive, a path in the engine's home
    compression_type: str = "GZIP"


@dataclass
class EngineState:
    """The engine's own part of a record (`_engine` in job.json), which GetJob does not show."""

    job_token: str  # what the job's quantum tasks carry to get its device's priority
    queue_ticket: Path | None  # the job's place in its QPU's queue (`queue`); deleted when it ends
    supervisor_pid: int | None = None  # recorded by the supervisor once it runs
    process_group: int | None = None  # the job's own process, leader of its process group
    # Variables the engine's caller set for the job's process (`LocalEngine.create_job`), applied
    # over the engine's own: the local endpoint's `s3://` locations for the jobs of its CreateJob.
    environment: dict[str, str] = field(default_factory=dict)


@dataclass
class JobRecord:
    """A job as the engine keeps it: GetJob's fields, in Python's names, and the engine's state."""

    job_arn: str
    job_name: str
    status: str
    created_at: datetime
    role_arn: str  # "" when the job was given none: the engine needs no role
    script: ScriptMode
    input_channels: dict[str, str]  # channel name to its directory under the job's
    instance_config: InstanceConfig
    output_path: str  # outputDataConfig.s3Path: where `output/model.tar.gz` goes
    checkpoint_path: str  # checkpointConfig: the same directory for the job and for "S3"
    stopping_condition: StoppingCondition
    device: str
    hyperparameters: dict[str, str]
    tags: dict[str, str]
    engine: EngineState
    events: list[JobEvent] = field(default_factory=list)
    reservation_arn: str | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    failure_reason: str | None = None
    billable_duration_ms: int | None = None

    @property
    def ended(self) -> bool:
        return self.status in TERMINAL_STATES

    # -- changes -----------------------------------------------------------------------------

    def add_event(self, event_type: str, message: str = "") -> None:
        self.events.append(JobEvent(event_type, now(), message))
        del self.events[:-MAX_EVENTS]

    def end(self, status: str, reason: str | None = None, event: str | None = None) -> None:
        """Ends the record: its final status, why it failed, when, and the event (`status` by default)."""
        self.status = status
        if reason:
            self.failure_reason = reason
        self.ended_at = now()
        self.add_event(event or status, reason or "")

    def end_as_lost(self, what: str) -> None:
        """Ends the record of a job whose instance was lost (`base.is_instance_failure`), saying `what` was."""
        self.end("FAILED", f"{INSTANCE_FAILURE_PREFIX}: The job was lost: {what}. Its checkpoints are kept; "
                           "waiting for it resubmits it from them (resubmit_on_instance_failure).")

    def bill_runtime(self) -> None:
        """Records the time from the job's start to its end as its billable duration, as Braket does."""
        if self.started_at is not None and self.ended_at is not None:
            self.billable_duration_ms = int((self.ended_at - self.started_at).total_seconds() * 1000)

    # -- the file ----------------------------------------------------------------------------

    def get_job(self) -> dict[str, Any]:
        """What GetJob says of the job: the record without the engine's part, its times datetimes."""
        return self._document(lambda time: time)

    def to_json(self) -> str:
        """job.json's text: GetJob's document with ISO 8601 times, and `_engine`."""
        document = self._document(datetime.isoformat)
        engine = self.engine
        document["_engine"] = {
            "jobToken": engine.job_token,
            "queueTicket": str(engine.queue_ticket) if engine.queue_ticket else None,
            **_present(supervisorPid=engine.supervisor_pid, processGroup=engine.process_group,
                       environment=engine.environment or None),
        }
        return json.dumps(document, indent=1)

    def _document(self, time: Callable[[datetime], Any]) -> dict[str, Any]:
        # Built afresh on every call: what a caller changes in it is not the record's.
        document = {
            "jobArn": self.job_arn,
            "jobName": self.job_name,
            "status": self.status,
            "createdAt": time(self.created_at),
            "roleArn": self.role_arn,
            "algorithmSpecification": {"scriptModeConfig": {
                "entryPoint": self.script.entry_point, "s3Uri": self.script.s3_uri,
                "compressionType": self.script.compression_type,
            }},
            "inputDataConfig": [{"channelName": channel, "dataSource": {"s3DataSource": {"s3Uri": uri}}}
                                for channel, uri in self.input_channels.items()],
            "instanceConfig": dict(vars(self.instance_config)),
            "outputDataConfig": {"s3Path": self.output_path},
            "checkpointConfig": {"localPath": self.checkpoint_path, "s3Uri": self.checkpoint_path},
            "stoppingCondition": dict(vars(self.stopping_condition)),
            "deviceConfig": {"device": self.device},
            "hyperParameters": dict(self.hyperparameters),
            "tags": dict(self.tags),
            "events": [{"eventType": e.event_type, "timeOfEvent": time(e.time_of_event), "message": e.message}
                       for e in self.events],
        }
        document.update(_present(
            associations=[{"arn": self.reservation_arn, "type": RESERVATION}] if self.reservation_arn else None,
            startedAt=self.started_at and time(self.started_at),
            endedAt=self.ended_at and time(self.ended_at),
            failureReason=self.failure_reason,
            billableDuration=self.billable_duration_ms,
        ))
        return document

    @classmethod
    def from_json(cls, data: Any, path: Path) -> JobRecord:
        """The record in `data` (job.json's parsed content, read from `path`), every value checked.

        Raises JobStateError naming `path`, the first value that is not as the engine writes it
        (where in the document, and what it is instead) and the fix."""
        try:
            return cls._read(_Fields(data))
        except _Problem as problem:
            raise damaged_record(path, str(problem)) from None

    @classmethod
    def _read(cls, record: _Fields) -> JobRecord:
        # In the file's order, so that of several problems the first in the file is named.
        return cls(
            job_arn=record.get("jobArn", _TEXT),
            job_name=record.get("jobName", _TEXT),
            status=record.get("status", _one_of(JOB_STATES)),
            created_at=record.get("createdAt", _time),
            started_at=record.find("startedAt", _time),
            ended_at=record.find("endedAt", _time),
            failure_reason=record.find("failureReason", _TEXT),
            billable_duration_ms=record.find("billableDuration", _INTEGER),
            role_arn=record.get("roleArn", _TEXT),
            script=record.get("algorithmSpecification", _Fields).get("scriptModeConfig", _script_mode),
            input_channels=dict(record.get("inputDataConfig", _list_of(_channel))),
            instance_config=record.get("instanceConfig", _instance_config),
            output_path=record.get("outputDataConfig", _Fields).get("s3Path", _TEXT),
            checkpoint_path=record.get("checkpointConfig", _Fields).get("s3Uri", _TEXT),
            stopping_condition=StoppingCondition(
                record.get("stoppingCondition", _Fields).get("maxRuntimeInSeconds", _INTEGER)),
            device=record.get("deviceConfig", _Fields).get("device", _TEXT),
            hyperparameters=record.get("hyperParameters", _MAPPING),
            tags=record.get("tags", _MAPPING),
            reservation_arn=next(iter(record.find("associations", _list_of(_association)) or []), None),
            events=record.get("events", _list_of(_event)),
            engine=record.get("_engine", _engine_state),
        )


def _present(**values: Any) -> dict[str, Any]:
    """The values that are set: job.json leaves out a field that is absent, as GetJob does."""
    return {key: value for key, value in values.items() if value is not None}


# -- reading job.json: each reader checks one value, found at `where`, and converts it ----------


class _Problem(Exception):
    """What keeps a value of the record from being read, and where it is."""


class _Fields:
    """One JSON object of the record, whose values are checked as they are taken."""

    def __init__(self, value: Any, where: str = ""):
        if not isinstance(value, dict):
            raise _Problem(f"{where or 'the record'} is {value!r:.60}, not an object")
        self.value, self.where = value, where

    def get(self, key: str, read: Callable[[Any, str], T]) -> T:
        """The value at `key`, read by `read`; raises _Problem if it is absent."""
        if key not in self.value:
            raise _Problem(f"{self._where(key)} is missing")
        return read(self.value[key], self._where(key))

    def find(self, key: str, read: Callable[[Any, str], T]) -> T | None:
        """The value at `key` of an optional field, read by `read`; None if it is absent (never if null)."""
        if key not in self.value:
            return None
        return read(self.value[key], self._where(key))

    def _where(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key


def _of(kind: type[T]) -> Callable[[Any, str], T]:
    def read(value: Any, where: str) -> T:
        if isinstance(value, kind) and not (isinstance(value, bool) and kind is not bool):
            return value
        raise _Problem(f"{where} is {value!r:.60}, not {kind.__name__}")

    return read


_TEXT, _INTEGER, _MAPPING = _of(str), _of(int), _of(dict)


def _strings(value: Any, where: str) -> dict[str, str]:
    mapping = _MAPPING(value, where)
    for key, item in mapping.items():
        if not isinstance(item, str):
            raise _Problem(f"{where}.{key} is {item!r:.60}, not str")
    return mapping


def _or_null(read: Callable[[Any, str], T]) -> Callable[[Any, str], T | None]:
    return lambda value, where: None if value is None else read(value, where)


def _one_of(choices: tuple[str, ...]) -> Callable[[Any, str], str]:
    def read(value: Any, where: str) -> str:
        if isinstance(value, str) and value in choices:
            return value
        raise _Problem(f"{where} is {value!r:.60}, not one of {sorted(choices)}")

    return read


def _time(value: Any, where: str) -> datetime:
    try:
        return datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise _Problem(f"{where} is {value!r:.60}, not an ISO 8601 time") from None


def _list_of(read: Callable[[Any, str], T]) -> Callable[[Any, str], list[T]]:
    def read_list(value: Any, where: str) -> list[T]:
        if not isinstance(value, list):
            raise _Problem(f"{where} is {value!r:.60}, not a list")
        return [read(item, f"{where}[{index}]") for index, item in enumerate(value)]

    return read_list


def _script_mode(value: Any, where: str) -> ScriptMode:
    fields = _Fields(value, where)
    return ScriptMode(fields.get("entryPoint", _TEXT), fields.get("s3Uri", _TEXT),
                      fields.get("compressionType", _TEXT))


def _channel(value: Any, where: str) -> tuple[str, str]:
    fields = _Fields(value, where)
    name = fields.get("channelName", _TEXT)
    return name, fields.get("dataSource", _Fields).get("s3DataSource", _Fields).get("s3Uri", _TEXT)


def _instance_config(value: Any, where: str) -> InstanceConfig:
    fields = _Fields(value, where)
    return InstanceConfig(fields.get("instanceType", _TEXT), fields.get("volumeSizeInGb", _INTEGER),
                          fields.get("instanceCount", _INTEGER))


def _association(value: Any, where: str) -> str:
    return _Fields(value, where).get("arn", _TEXT)


def _event(value: Any, where: str) -> JobEvent:
    fields = _Fields(value, where)
    return JobEvent(fields.get("eventType", _TEXT), fields.get("timeOfEvent", _time),
                    fields.find("message", _TEXT) or "")


def _engine_state(value: Any, where: str) -> EngineState:
    fields = _Fields(value, where)
    token = fields.get("jobToken", _TEXT)
    ticket = fields.get("queueTicket", _or_null(_TEXT))
    return EngineState(
        job_token=token,
        queue_ticket=None if ticket is None else Path(ticket),
        supervisor_pid=fields.find("supervisorPid", _INTEGER),
        process_group=fields.find("processGroup", _INTEGER),
        environment=fields.find("environment", _strings) or {},
    )
