"""A local Amazon Braket endpoint: Braket's REST-JSON API on 127.0.0.1, with S3, CloudWatch Logs,
STS and IAM answered by moto on the same port.

Requests are told apart by the service in their SigV4 credential scope, so one
`AWS_ENDPOINT_URL` (or prefect-aws's `endpoint_url`) points boto3, s3fs and this package at it.

    prefect-braket-endpoint --port 4566                      # or python -m prefect_braket.endpoint
    prefect-braket-endpoint --port 4566 --devices devices.json

It answers GetDevice, SearchDevices, CreateQuantumTask, GetQuantumTask, CancelQuantumTask,
SearchQuantumTasks, CreateJob, GetJob, CancelJob and SearchJobs, with Braket's error codes.

- Devices are a configurable set (`DeviceModel`: ARN, region from the ARN, QPU or simulator,
  status, execution windows, qubits, shots range, time per task); their tasks run on the local
  simulators. A QPU ARN is served only in its region.
- Each device has a queue of quantum tasks: tasks carrying the token of a job running on that
  device go first (`queuePriority: Priority`), a QPU runs one task at a time and only inside its
  execution windows, and queue positions and sizes are reported as Braket reports them (strings;
  position 1 runs next). `results.json` goes to the emulated S3.
- Jobs run on the embedded engine (one running job per QPU) from the code and input data in the
  emulated S3. Their log goes to CloudWatch Logs (`/aws/braket/jobs`, `{name}/{uuid}/…`) and their
  checkpoints to S3 as they grow; `model.tar.gz` goes to S3 when they end.
- Faults on demand (`POST /_endpoint/faults`, see `Faults`): throttling, 5xx errors, latency,
  devices OFFLINE, job instances dying mid-run, result objects missing. `GET /_endpoint/stats`
  counts what happened; `POST /_endpoint/devices` replaces the device set.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import tempfile
import threading
import time
import uuid
from collections import deque
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable
from urllib.parse import parse_qs, unquote

from prefect_braket.backends.local.engine import ARN_PREFIX, LocalEngine
from prefect_braket.core.arns import check_device_arn, split_s3_uri
from prefect_braket.core.layout import LOG_GROUP
from prefect_braket.core.spec import JobSpec, StoppingCondition
from prefect_braket.core.states import TERMINAL_STATES
from prefect_braket.quantum.devices import (
    DeviceDescription,
    ExecutionWindow,
    LocalSimulator,
)
from prefect_braket.quantum.programs import Program

ACCOUNT = "123456789012"
SCOPE = re.compile(r"Credential=[^/]+/\d{8}/([a-z0-9-]+)/([a-z0-9-]+)/aws4_request")
ALWAYS_OPEN = {"executionDay": "Everyday", "windowStartHour": "00:00", "windowEndHour": "23:59:59"}
TASK_TERMINAL_STATES = frozenset({"COMPLETED", "FAILED", "CANCELLED"})
WINDOW_DAYS = ("Everyday", "Weekdays", "Weekend", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday",
               "Saturday", "Sunday")
NO_POSITION = "{kind} is in {status} status. AmazonBraket does not show queue position for this status."


class BraketError(Exception):
    """An error answered as Braket answers it: an HTTP status and an `x-amzn-ErrorType`."""

    status = 400
    code = "ValidationException"


class ValidationError(BraketError):
    pass


class NotFound(BraketError):
    status, code = 404, "ResourceNotFoundException"


class Conflict(BraketError):
    status, code = 409, "ConflictException"


class DeviceOffline(BraketError):
    status, code = 424, "DeviceOfflineException"


class DeviceRetired(BraketError):
    status, code = 410, "DeviceRetiredException"


@dataclass
class DeviceModel:
    """A device the endpoint serves. Its tasks run on a local simulator; a QPU's take
    `seconds_per_task` each, one at a time, inside its execution windows.

    Example (a `--devices` file is a JSON list of these):
        `{"arn": "arn:aws:braket:us-west-1::device/qpu/rigetti/Cepheus-1-108Q", "name": "Cepheus-1-108Q",
        "provider": "Rigetti", "type": "QPU", "qubits": 108,
        "execution_windows": [{"executionDay": "Weekdays", "windowStartHour": "15:00", "windowEndHour": "19:00"}]}`
    """

    arn: str
    name: str
    provider: str = "Amazon Braket"
    type: str = "SIMULATOR"
    status: str = "ONLINE"
    simulator: str = "braket_sv"
    qubits: int | None = None
    execution_windows: list[dict[str, str]] = field(default_factory=lambda: [dict(ALWAYS_OPEN)])
    shots_range: list[int] | None = None
    seconds_per_task: float = 0.0
    concurrency: int | None = None

    def __post_init__(self) -> None:
        check_device_arn(self.arn)
        if self.arn.startswith("local:"):
            raise ValueError(f"Device {self.arn!r}: the endpoint serves AWS device ARNs, not local ones.")
        for name, value, allowed in (("type", self.type, ("QPU", "SIMULATOR")),
                                     ("status", self.status, ("ONLINE", "OFFLINE", "RETIRED")),
                                     ("simulator", self.simulator, ("braket_sv", "braket_dm"))):
            if value not in allowed:
                raise ValueError(f"Device {self.arn}: {name} {value!r} is not one of {', '.join(allowed)}.")
        for window in self.execution_windows:
            day, start, end = (window.get(k) for k in ("executionDay", "windowStartHour", "windowEndHour"))
            if day not in WINDOW_DAYS or not all(re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d(:[0-5]\d)?", h or "")
                                                 for h in (start, end)):
                raise ValueError(f"Device {self.arn}: execution window {window} needs executionDay (one of "
                                 f"{', '.join(WINDOW_DAYS)}), windowStartHour and windowEndHour as HH:MM[:SS].")
        self.shots_range = list(self.shots_range or ([1, 100000] if self.type == "QPU" else [0, 100000]))
        self.concurrency = self.concurrency or (1 if self.type == "QPU" else 2)

    @property
    def region(self) -> str:
        """The device's region; "" for simulators, which every region serves."""
        return self.arn.split(":")[3]

    @property
    def local_arn(self) -> str:
        return f"local:braket/{self.simulator}"

    def capabilities(self) -> dict[str, Any]:
        capabilities = json.loads(LocalSimulator.simulator(self.local_arn).properties.json())
        capabilities["service"].update(executionWindows=self.execution_windows, shotsRange=self.shots_range)
        if self.qubits:
            capabilities["paradigm"]["qubitCount"] = self.qubits
        return capabilities

    def window_open(self) -> bool:
        windows = tuple(ExecutionWindow(w["executionDay"], w["windowStartHour"], w["windowEndHour"])
                        for w in self.execution_windows)
        return DeviceDescription(self.arn, self.name, self.provider, self.type, self.status, self.qubits or 0,
                                 tuple(self.shots_range), windows).window_open()


DEFAULT_DEVICES = (
    DeviceModel("arn:aws:braket:::device/quantum-simulator/amazon/sv1", "SV1"),
    DeviceModel("arn:aws:braket:::device/quantum-simulator/amazon/dm1", "DM1", simulator="braket_dm"),
    DeviceModel("arn:aws:braket:us-east-1::device/qpu/ionq/Forte-1", "Forte-1", "IonQ", "QPU", qubits=36,
                seconds_per_task=0.05),
    DeviceModel("arn:aws:braket:eu-north-1::device/qpu/iqm/Garnet", "Garnet", "IQM", "QPU", qubits=20,
                seconds_per_task=0.05),
)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def _position(ahead: int) -> str:
    return ">2000" if ahead > 2000 else str(ahead)


def _matches(value: Any, operator: str, wanted: list[str], timestamp: bool) -> bool:
    if value is None:
        return False
    if operator == "CONTAINS":
        return any(w in str(value) for w in wanted)
    if timestamp:
        value = _as_time(value)
        wanted = [_as_time(w) for w in wanted]
    else:
        value = str(value)
    if operator == "EQUAL":
        return value in wanted
    if operator == "BETWEEN":
        if len(wanted) != 2:
            raise ValidationError("BETWEEN takes two values.")
        return wanted[0] <= value <= wanted[1]
    compare = {"LT": lambda a, b: a < b, "LTE": lambda a, b: a <= b, "GT": lambda a, b: a > b,
               "GTE": lambda a, b: a >= b}.get(operator)
    if compare is None:
        raise ValidationError(f"Unknown filter operator {operator!r}.")
    return compare(value, wanted[0])


def _as_time(value: Any) -> datetime:
    if isinstance(value, (int, float)) or (isinstance(value, str) and re.fullmatch(r"\d+(\.\d+)?", value)):
        return datetime.fromtimestamp(float(value), timezone.utc)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _search(items: list[dict[str, Any]], payload: dict[str, Any], filterable: tuple[str, ...], shown: tuple[str, ...],
            key: str) -> dict[str, Any]:
    """Filters (every filter must hold), then pages (`nextToken` is an offset) Braket-style."""
    for flt in payload.get("filters") or []:
        if flt["name"] not in filterable:
            raise ValidationError(f"Cannot filter on {flt['name']!r}; use one of {', '.join(filterable)}.")
        timestamp = flt["name"].endswith("At")
        items = [i for i in items if _matches(i.get(flt["name"]), flt["operator"], flt["values"], timestamp)]
    items.sort(key=lambda i: i["createdAt"])
    start = int(payload.get("nextToken") or 0)
    size = int(payload.get("maxResults") or 100)
    answer: dict[str, Any] = {key: [{k: v for k, v in i.items() if k in shown and v is not None}
                                    for i in items[start:start + size]]}
    if start + size < len(items):
        answer["nextToken"] = str(start + size)
    return answer


TASK_SUMMARY = ("quantumTaskArn", "status", "deviceArn", "shots", "outputS3Bucket", "outputS3Directory", "createdAt",
                "endedAt", "tags")
JOB_SUMMARY = ("status", "jobArn", "jobName", "device", "createdAt", "startedAt", "endedAt", "tags")
DEVICE_SUMMARY = ("deviceArn", "deviceName", "providerName", "deviceType", "deviceStatus")


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


class BraketApi:
    """The Braket part of the endpoint: devices with queues, quantum tasks run on local simulators,
    jobs run on the embedded engine."""

    def __init__(self, client: Callable[[str], Any], engine: LocalEngine, devices: Iterable[DeviceModel] = DEFAULT_DEVICES):
        self._client = client
        self._engine = engine
        self._lock = threading.RLock()
        self._wake = threading.Condition(self._lock)
        self._devices: dict[str, DeviceModel] = {}
        self._queues: dict[str, tuple[deque, deque]] = {}  # (priority, normal) per device
        self._workers: dict[str, int] = {}
        self._tasks: dict[str, dict[str, Any]] = {}
        self._jobs: dict[str, dict[str, Any]] = {}
        self._task_tokens: dict[str, str] = {}  # client token -> task ARN
        self._job_client_tokens: dict[str, str] = {}  # client token -> job ARN
        self._job_tokens: dict[str, str] = {}  # a running job's AMZN_BRAKET_JOB_TOKEN -> job ARN
        self.faults = Faults()
        self.random = random.Random()
        self.stats = dict.fromkeys(("calls", "throttled", "failed", "tasks_created", "tasks_deduplicated",
                                    "results_dropped", "jobs_created", "jobs_deduplicated", "jobs_killed"), 0)
        self.set_devices(devices)
        threading.Thread(target=self._tend_jobs, daemon=True, name="endpoint-jobs").start()

    def set_devices(self, devices: Iterable[DeviceModel]) -> None:
        """Replaces the device set. Queued tasks of devices that stay keep their places; those of
        devices that go fail. Workers are added or retire to match each device's concurrency."""
        with self._wake:
            self._devices = {d.arn: d for d in devices}
            for arn, queues in self._queues.items():
                if arn not in self._devices:
                    for record in (*queues[0], *queues[1]):
                        record.update(status="FAILED", endedAt=_now(),
                                      failureReason=f"Device {arn} was removed from this endpoint.")
                        record.pop("_program", None)
                    queues[0].clear(), queues[1].clear()
            for device in self._devices.values():
                self._queues.setdefault(device.arn, (deque(), deque()))
                for index in range(self._workers.get(device.arn, 0), device.concurrency):
                    threading.Thread(target=self._work, args=(device.arn, index), daemon=True).start()
                    self._workers[device.arn] = index + 1
            self._wake.notify_all()

    def set_faults(self, faults: Faults) -> None:
        with self._wake:
            self.faults = faults
            self.random = random.Random(faults.seed)
            self._wake.notify_all()

    def count(self, name: str) -> None:
        with self._lock:
            self.stats[name] += 1

    # -- dispatch ----------------------------------------------------------------------------------

    def handle(self, method: str, path: str, query: str, body: bytes, region: str) -> tuple[int, dict[str, Any], str | None]:
        """Answers one Braket call: (HTTP status, body, error type or None)."""
        routes = [
            ("GET", r"/device/(.+)", self.get_device),
            ("POST", r"/devices", self.search_devices),
            ("POST", r"/quantum-task", self.create_quantum_task),
            ("PUT", r"/quantum-task/(.+)/cancel", self.cancel_quantum_task),
            ("GET", r"/quantum-task/(.+)", self.get_quantum_task),
            ("POST", r"/quantum-tasks", self.search_quantum_tasks),
            ("POST", r"/job", self.create_job),
            ("PUT", r"/job/(.+)/cancel", self.cancel_job),
            ("GET", r"/job/(.+)", self.get_job),
            ("POST", r"/jobs", self.search_jobs),
        ]
        for verb, pattern, handler in routes:
            match = re.fullmatch(pattern, path)
            if verb == method and match:
                arguments = [unquote(g) for g in match.groups()]
                try:
                    payload = json.loads(body) if body else {}
                    return 200, handler(*arguments, payload=payload, region=region, query=parse_qs(query)), None
                except BraketError as error:
                    return error.status, {"message": str(error)}, error.code
                except (ValueError, KeyError, TypeError) as error:
                    return 400, {"message": f"Invalid request: {error!r}"}, "ValidationException"
                except Exception as error:  # reported as Braket reports its own faults, not as an HTML page
                    return 500, {"message": f"{type(error).__name__}: {error}"}, "InternalServiceException"
        return 404, {"message": f"{method} {path} is not served by this endpoint."}, "ResourceNotFoundException"

    # -- devices ---------------------------------------------------------------------------------------

    def _device_in(self, arn: str, region: str, missing: type[BraketError] = NotFound) -> DeviceModel:
        device = self._devices.get(arn)
        if device is None:
            raise missing(f"Device {arn} not found: this endpoint serves {', '.join(sorted(self._devices))}.")
        if device.region and device.region != region:
            raise missing(f"Device {arn} is in {device.region}; this request went to {region}. "
                          "Send it to the device's region.")
        return device

    def _status(self, device: DeviceModel) -> str:
        return "OFFLINE" if device.status == "ONLINE" and device.arn in self.faults.offline_devices else device.status

    def _check_available(self, device: DeviceModel) -> None:
        status = self._status(device)
        if status == "RETIRED":
            raise DeviceRetired(f"Device {device.arn} is retired.")
        if status == "OFFLINE":
            raise DeviceOffline(f"Device {device.arn} is OFFLINE.")

    def _describe(self, device: DeviceModel) -> dict[str, Any]:
        with self._lock:
            priority, normal = self._queues[device.arn]
            sizes = len(priority), len(normal)
            jobs = [r["local"] for r in self._jobs.values() if r["device"] == device.arn]
        statuses = [self._engine.get_job(local)["status"] for local in jobs]
        queued, running = statuses.count("QUEUED"), statuses.count("RUNNING")
        jobs_size = _position(queued) + (f" ({running} prioritized job(s) running)" if running else "")
        return {
            "deviceArn": device.arn, "deviceName": device.name, "providerName": device.provider,
            "deviceType": device.type, "deviceStatus": self._status(device),
            "deviceCapabilities": json.dumps(device.capabilities()),
            "deviceQueueInfo": [
                {"queue": "QUANTUM_TASKS_QUEUE", "queueSize": ">4000" if sizes[1] > 4000 else str(sizes[1]),
                 "queuePriority": "Normal"},
                {"queue": "QUANTUM_TASKS_QUEUE", "queueSize": ">4000" if sizes[0] > 4000 else str(sizes[0]),
                 "queuePriority": "Priority"},
                {"queue": "JOBS_QUEUE", "queueSize": jobs_size},
            ],
        }

    def get_device(self, arn: str, payload: dict[str, Any], region: str, query: dict[str, list[str]]) -> dict[str, Any]:
        return self._describe(self._device_in(arn, region))

    def search_devices(self, payload: dict[str, Any], region: str, query: dict[str, list[str]]) -> dict[str, Any]:
        devices = [{"deviceArn": d.arn, "deviceName": d.name, "providerName": d.provider, "deviceType": d.type,
                    "deviceStatus": self._status(d)} for d in self._devices.values() if d.region in ("", region)]
        for flt in payload.get("filters") or []:
            if flt["name"] not in DEVICE_SUMMARY:
                raise ValidationError(f"Cannot filter devices on {flt['name']!r}; use one of {', '.join(DEVICE_SUMMARY)}.")
            devices = [d for d in devices if d[flt["name"]] in flt["values"]]
        return {"devices": devices}

    # -- quantum tasks -----------------------------------------------------------------------------------

    def _job_for_token(self, token: str | None, device_arn: str) -> tuple[str | None, bool]:
        """The job a token belongs to, and whether its tasks to this device get priority: they do
        while the job runs and the device is the job's. A token this endpoint did not issue (a job on
        another engine) gives neither."""
        with self._lock:
            job_arn = self._job_tokens.get(token or "")
            record = self._jobs.get(job_arn or "")
        if record is None:
            return None, False
        running = self._engine.get_job(record["local"])["status"] == "RUNNING"
        return job_arn, running and record["device"] == device_arn

    def create_quantum_task(self, payload: dict[str, Any], region: str, query: dict[str, list[str]]) -> dict[str, Any]:
        token = payload.get("clientToken")
        with self._lock:
            if token and token in self._task_tokens:
                self.stats["tasks_deduplicated"] += 1
                return {"quantumTaskArn": self._task_tokens[token]}
        device = self._device_in(payload["deviceArn"], region, missing=ValidationError)
        self._check_available(device)
        shots = int(payload["shots"])
        if not device.shots_range[0] <= shots <= device.shots_range[1]:
            raise ValidationError(f"{shots} shots is outside {device.name}'s range {device.shots_range}.")
        action = json.loads(payload["action"])
        program = Program(action["source"], action.get("inputs") or {})
        program.check_syntax()  # Braket refuses such a program at creation, not when it runs
        if device.qubits and program.qubit_count() > device.qubits:
            raise ValidationError(f"The program uses {program.qubit_count()} qubits; {device.name} has {device.qubits}.")
        job_arn, priority = self._job_for_token(payload.get("jobToken"), device.arn)
        task_id = str(uuid.uuid4())
        arn = f"arn:aws:braket:{region}:{ACCOUNT}:quantum-task/{task_id}"
        record = {
            "quantumTaskArn": arn, "status": "QUEUED", "deviceArn": device.arn,
            "deviceParameters": payload.get("deviceParameters") or "{}", "shots": shots,
            "outputS3Bucket": payload["outputS3Bucket"],
            "outputS3Directory": f"{payload['outputS3KeyPrefix'].rstrip('/')}/{task_id}",
            "createdAt": _now(), "tags": payload.get("tags") or {}, "jobArn": job_arn,
            "_program": program, "_priority": priority,
        }
        with self._wake:
            if token and token in self._task_tokens:  # a concurrent call with the same token won
                self.stats["tasks_deduplicated"] += 1
                return {"quantumTaskArn": self._task_tokens[token]}
            self._tasks[arn] = record
            if token:
                self._task_tokens[token] = arn
            self._queue_of(record).append(record)
            self.stats["tasks_created"] += 1
            self._wake.notify_all()
        return {"quantumTaskArn": arn}

    def _next_task(self, device_arn: str, index: int) -> tuple[dict[str, Any], DeviceModel] | None:
        """Blocks until the device may run a task and one is queued (priority tasks first); None
        when this worker is no longer wanted (the device went, or runs fewer tasks at once)."""
        with self._wake:
            while True:
                device = self._devices.get(device_arn)
                if device is None or index >= device.concurrency:
                    self._workers[device_arn] -= 1
                    return None
                if self._status(device) == "ONLINE" and device.window_open():
                    priority, normal = self._queues[device_arn]
                    if priority or normal:
                        record = (priority or normal).popleft()
                        record["status"] = "RUNNING"
                        return record, device
                self._wake.wait(timeout=0.5)  # windows open with time, not with a notification

    def _work(self, device_arn: str, index: int) -> None:
        while (task := self._next_task(device_arn, index)) is not None:
            record, device = task
            started = time.monotonic()
            try:
                _, document, elapsed = LocalSimulator.run(device.local_arn, record["_program"], record["shots"])
                document["taskMetadata"].update(id=record["quantumTaskArn"], deviceId=device.arn)
                if document.get("measurements"):  # the simulator's bits are strings; Braket's schema has integers
                    document["measurements"] = [[int(bit) for bit in shot] for shot in document["measurements"]]
                document["additionalMetadata"]["simulatorMetadata"] = {
                    "braketSchemaHeader": {"name": "braket.task_result.simulator_metadata", "version": "1"},
                    "executionDuration": int(elapsed),
                }
                time.sleep(max(0.0, device.seconds_per_task - (time.monotonic() - started)))
                with self._lock:
                    cancelled = record["status"] == "CANCELLING"
                    dropped = not cancelled and self.faults.missing_results > 0
                    if dropped:
                        self.faults.missing_results -= 1
                        self.stats["results_dropped"] += 1
                if not cancelled and not dropped:
                    body = json.dumps(document, default=lambda value: getattr(value, "value", None) or _plain(value))
                    self._client("s3").put_object(Bucket=record["outputS3Bucket"],
                                                  Key=f"{record['outputS3Directory']}/results.json", Body=body)
                outcome = {"status": "CANCELLED" if cancelled else "COMPLETED"}
            except Exception as error:  # the task ended; it must not look RUNNING forever
                outcome = {"status": "FAILED", "failureReason": f"{type(error).__name__}: {error}"[:1024]}
            with self._lock:
                record.update(outcome, endedAt=_now())
                record.pop("_program", None)

    def _record(self, records: dict[str, dict[str, Any]], what: str, arn: str) -> dict[str, Any]:
        with self._lock:
            record = records.get(arn)
        if record is None:
            raise NotFound(f"{what} {arn} not found.")
        return record

    def _task(self, arn: str) -> dict[str, Any]:
        return self._record(self._tasks, "Quantum task", arn)

    def _queue_of(self, record: dict[str, Any]) -> deque:
        """The queue a task waits in: its device's priority or normal one."""
        return self._queues[record["deviceArn"]][0 if record["_priority"] else 1]

    def _public_task(self, record: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in record.items() if not k.startswith("_") and v is not None}

    def get_quantum_task(self, arn: str, payload: dict[str, Any], region: str, query: dict[str, list[str]]) -> dict[str, Any]:
        with self._lock:
            record = self._task(arn)
            answer = self._public_task(record)
            if "QueueInfo" in query.get("additionalAttributeNames", []):
                info = {"queue": "QUANTUM_TASKS_QUEUE", "queuePriority": "Priority" if record["_priority"] else "Normal"}
                if record["status"] == "QUEUED":
                    info["position"] = _position(1 + next(i for i, r in enumerate(self._queue_of(record)) if r is record))
                else:
                    info.update(position="None", message=NO_POSITION.format(kind="Task", status=record["status"]))
                answer["queueInfo"] = info
            return answer

    def cancel_quantum_task(self, arn: str, payload: dict[str, Any], region: str, query: dict[str, list[str]]) -> dict[str, Any]:
        with self._lock:
            record = self._task(arn)
            if record["status"] in TASK_TERMINAL_STATES:
                raise Conflict(f"Quantum task {arn} has already ended {record['status']}.")
            if record["status"] == "QUEUED":
                self._queue_of(record).remove(record)
                record.update(status="CANCELLED", endedAt=_now())
                record.pop("_program", None)
            else:
                record["status"] = "CANCELLING"
            return {"quantumTaskArn": arn, "cancellationStatus": "CANCELLED" if record["status"] == "CANCELLED"
                    else "CANCELLING"}

    def search_quantum_tasks(self, payload: dict[str, Any], region: str, query: dict[str, list[str]]) -> dict[str, Any]:
        with self._lock:
            tasks = [self._public_task(r) for r in self._tasks.values() if r["quantumTaskArn"].split(":")[3] == region]
        return _search(tasks, payload, TASK_SUMMARY + ("jobArn",), TASK_SUMMARY, "quantumTasks")

    # -- jobs ---------------------------------------------------------------------------------------------

    def _download_prefix(self, uri: str, target: Path) -> None:
        bucket, prefix = split_s3_uri(uri)
        s3 = self._client("s3")
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                relative = item["Key"][len(prefix):].lstrip("/") or item["Key"].rsplit("/", 1)[-1]
                destination = target / relative
                destination.parent.mkdir(parents=True, exist_ok=True)
                s3.download_file(bucket, item["Key"], str(destination))

    def create_job(self, payload: dict[str, Any], region: str, query: dict[str, list[str]]) -> dict[str, Any]:
        token = payload.get("clientToken")
        with self._lock:
            if token and token in self._job_client_tokens:
                self.stats["jobs_deduplicated"] += 1
                return {"jobArn": self._job_client_tokens[token]}
        device = self._device_in(payload["deviceConfig"]["device"], region, missing=ValidationError)
        self._check_available(device)
        work = Path(tempfile.mkdtemp(prefix="braket-endpoint-job-"))
        script = payload["algorithmSpecification"]["scriptModeConfig"]
        bucket, key = split_s3_uri(script["s3Uri"])
        self._client("s3").download_file(bucket, key, str(work / "source.tar.gz"))
        channels = {}
        for channel in payload.get("inputDataConfig") or []:
            target = work / "input" / channel["channelName"]
            self._download_prefix(channel["dataSource"]["s3DataSource"]["s3Uri"], target)
            channels[channel["channelName"]] = str(target)
        checkpoints = payload.get("checkpointConfig", {}).get("s3Uri")
        if checkpoints:  # copy_checkpoints_from_job put them in S3 before CreateJob; the job reads them at start
            self._download_prefix(checkpoints, work / "checkpoints")
        spec = JobSpec(
            job_name=payload["jobName"], device=device.arn, source_module=work / "source.tar.gz",
            entry_point=script["entryPoint"], hyperparameters=payload.get("hyperParameters") or {},
            input_data=channels, tags=payload.get("tags") or {},
            stopping_condition=StoppingCondition(payload.get("stoppingCondition", {}).get("maxRuntimeInSeconds", 432000)),
        )
        # The engine's own claim on the client token makes two racing calls create one job.
        local = self._engine.create_job(spec, client_token=token, initial_checkpoints=work / "checkpoints")
        arn = f"arn:aws:braket:{region}:{ACCOUNT}:job/{local[len(ARN_PREFIX):]}"
        stream = f"{payload['jobName']}/{local[len(ARN_PREFIX):]}/algo-1-{int(time.time())}"
        job_token = self._engine.job_token(local)
        with self._lock:
            if arn in self._jobs:
                self.stats["jobs_deduplicated"] += 1
                return {"jobArn": arn}
            self._jobs[arn] = {"local": local, "request": payload, "device": device.arn, "stream": stream,
                               "cursor": None, "synced": False, "checkpoints": {}, "checkpoint_writes": 0, "killed": False,
                               "lock": threading.Lock()}
            self._job_tokens[job_token] = arn
            if token:
                self._job_client_tokens[token] = arn
            self.stats["jobs_created"] += 1
        return {"jobArn": arn}

    def _ship_log(self, record: dict[str, Any]) -> None:
        chunk = self._engine.read_log(record["local"], record["cursor"])
        if not chunk.lines:
            return
        logs = self._client("logs")
        if record["cursor"] is None:
            for create in (lambda: logs.create_log_group(logGroupName=LOG_GROUP),
                           lambda: logs.create_log_stream(logGroupName=LOG_GROUP, logStreamName=record["stream"])):
                try:
                    create()
                except logs.exceptions.ResourceAlreadyExistsException:
                    pass
        now = int(time.time() * 1000)
        logs.put_log_events(logGroupName=LOG_GROUP, logStreamName=record["stream"],
                            logEvents=[{"timestamp": now, "message": line} for line in chunk.lines])
        record["cursor"] = chunk.cursor

    def _ship_checkpoints(self, record: dict[str, Any]) -> None:
        """Copies new or changed checkpoint files to the job's checkpoint S3 URI, as Braket syncs them."""
        target = record["request"].get("checkpointConfig", {}).get("s3Uri")
        if not target:
            return
        bucket, prefix = split_s3_uri(target)
        root = self._engine.checkpoint_directory(record["local"])
        for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")):
            name = path.relative_to(root).as_posix()
            try:  # a checkpoint is written whole and renamed into place: read each version once
                stamp = path.stat().st_mtime_ns
                if record["checkpoints"].get(name) == stamp:
                    continue
                self._client("s3").put_object(Bucket=bucket, Key=f"{prefix}/{name}", Body=path.read_bytes())
            except FileNotFoundError:  # gone between listing and reading; the next pass sees what replaced it
                continue
            record["checkpoints"][name] = stamp
            record["checkpoint_writes"] += 1

    def _sync(self, record: dict[str, Any]) -> dict[str, Any]:
        """Brings logs, checkpoints and (once ended) output to CloudWatch and S3; returns the job's metadata."""
        with record["lock"]:  # one job's uploads at a time; other calls go on meanwhile
            meta = self._engine.get_job(record["local"])
            if record["synced"]:
                return meta
            self._ship_log(record)
            self._ship_checkpoints(record)
            if meta["status"] in TERMINAL_STATES:
                archive = self._engine.output_archive(record["local"])
                if archive.exists():
                    bucket, prefix = split_s3_uri(record["request"]["outputDataConfig"]["s3Path"])
                    self._client("s3").upload_file(str(archive), bucket, f"{prefix}/output/model.tar.gz")
                record["synced"] = True
            return meta

    def _tend_jobs(self) -> None:
        """Syncs running jobs in the background and kills the instances `Faults.job_deaths` asks for."""
        while True:
            time.sleep(0.25)
            with self._lock:
                records = [r for r in self._jobs.values() if not r["synced"]]
            for record in records:
                try:
                    meta = self._sync(record)
                    if meta["status"] == "RUNNING" and "startedAt" in meta and not record["killed"]:
                        self._maybe_kill(record, meta)
                except Exception:  # a passing S3 or engine hiccup: the next pass tries again
                    continue

    def _maybe_kill(self, record: dict[str, Any], meta: dict[str, Any]) -> None:
        age = (datetime.now(timezone.utc) - meta["startedAt"]).total_seconds()
        with self._lock:
            death = next((d for d in self.faults.job_deaths if meta["jobName"].startswith(d.get("job_name_prefix", ""))
                          and age >= float(d.get("after_seconds", 0))
                          and record["checkpoint_writes"] >= int(d.get("after_checkpoints", 0))), None)
            if death is None:
                return
            self.faults.job_deaths.remove(death)
            self.stats["jobs_killed"] += 1
            record["killed"] = True
        with record["lock"]:
            self._ship_checkpoints(record)  # what a continuously syncing instance had uploaded
        self._engine.kill_instance(record["local"])

    def _job(self, arn: str) -> dict[str, Any]:
        return self._record(self._jobs, "Job", arn)

    def get_job(self, arn: str, payload: dict[str, Any], region: str, query: dict[str, list[str]]) -> dict[str, Any]:
        record = self._job(arn)
        meta = self._sync(record)
        request = record["request"]
        answer = {key: request[key] for key in (
            "jobName", "roleArn", "algorithmSpecification", "instanceConfig", "outputDataConfig", "checkpointConfig",
            "stoppingCondition", "hyperParameters", "deviceConfig", "tags", "inputDataConfig", "associations",
        ) if key in request}
        answer.update(jobArn=arn, status=meta["status"],
                      events=[{**e, "timeOfEvent": e["timeOfEvent"].timestamp()} for e in meta["events"]][-20:])
        if "QueueInfo" in query.get("additionalAttributeNames", []):
            answer["queueInfo"] = meta["queueInfo"]
        for key in ("createdAt", "startedAt", "endedAt"):
            if key in meta:
                answer[key] = meta[key].timestamp()
        for key in ("failureReason", "billableDuration"):
            if key in meta:
                answer[key] = meta[key]
        return answer

    def cancel_job(self, arn: str, payload: dict[str, Any], region: str, query: dict[str, list[str]]) -> dict[str, Any]:
        status = self._engine.cancel_job(self._job(arn)["local"])
        if status in TERMINAL_STATES:
            raise Conflict(f"Job {arn} has already ended {status}.")
        return {"jobArn": arn, "cancellationStatus": "CANCELLING"}

    def search_jobs(self, payload: dict[str, Any], region: str, query: dict[str, list[str]]) -> dict[str, Any]:
        with self._lock:
            records = [(arn, r) for arn, r in self._jobs.items() if arn.split(":")[3] == region]
        jobs = []
        for arn, record in records:
            meta = self._engine.get_job(record["local"])
            jobs.append({"status": meta["status"], "jobArn": arn, "jobName": meta["jobName"], "device": record["device"],
                         "tags": meta.get("tags") or {},
                         **{k: meta[k].isoformat() for k in ("createdAt", "startedAt", "endedAt") if k in meta}})
        return _search(jobs, payload, JOB_SUMMARY, JOB_SUMMARY, "jobs")


def _plain(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, complex):
        return [value.real, value.imag]
    raise TypeError(f"Cannot serialise {type(value).__name__}")


class Endpoint:
    """The WSGI application: Braket requests to `BraketApi`, everything else to moto.

    Control routes: `/_endpoint/faults` (POST `Faults` fields to set, GET to read),
    `/_endpoint/devices` (POST a list of `DeviceModel` fields to replace the set, GET to read) and
    `/_endpoint/stats` (calls, throttled, failed, tasks and jobs created and deduplicated, jobs
    killed, results dropped).
    """

    def __init__(self, url: str, engine_home: str | None = None, devices: Iterable[DeviceModel] = DEFAULT_DEVICES):
        try:
            from moto.moto_server.werkzeug_app import (
                DomainDispatcherApplication,
                create_backend_app,
            )
        except ImportError as error:
            raise ImportError("The local Braket endpoint answers S3, CloudWatch Logs, STS and IAM with moto: "
                              "pip install 'prefect-braket[endpoint]'.") from error

        self.moto = DomainDispatcherApplication(create_backend_app)
        self.url = url
        # Jobs run as local processes that inherit this environment: their AWS calls come here too.
        os.environ.update(AWS_ENDPOINT_URL=url, AWS_ACCESS_KEY_ID="endpoint", AWS_SECRET_ACCESS_KEY="endpoint")
        os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
        self._clients: dict[str, Any] = {}
        self._clients_lock = threading.Lock()
        self.braket = BraketApi(self._aws_client, LocalEngine(engine_home or tempfile.mkdtemp(prefix="braket-endpoint-")),
                                devices)

    def _aws_client(self, service: str) -> Any:
        with self._clients_lock:
            if service not in self._clients:
                import boto3

                self._clients[service] = boto3.client(service, endpoint_url=self.url, region_name="us-east-1",
                                                      aws_access_key_id="endpoint", aws_secret_access_key="endpoint")
            return self._clients[service]

    def _control(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        path, method = environ["PATH_INFO"], environ["REQUEST_METHOD"]
        try:
            if method == "POST":
                length = int(environ.get("CONTENT_LENGTH") or 0)
                body = json.loads(environ["wsgi.input"].read(length) or b"{}")
                if path == "/_endpoint/faults":
                    self.braket.set_faults(Faults(**body))
                elif path == "/_endpoint/devices":
                    self.braket.set_devices([DeviceModel(**d) for d in body])
            answers = {"/_endpoint/stats": lambda: self.braket.stats,
                       "/_endpoint/faults": lambda: asdict(self.braket.faults),
                       "/_endpoint/devices": lambda: [asdict(d) for d in self.braket._devices.values()]}
            if path not in answers:
                return self._answer(start_response, 404, {"message": f"No control route {path}."}, None)
            return self._answer(start_response, 200, answers[path](), None)
        except (TypeError, ValueError) as error:
            return self._answer(start_response, 400, {"message": str(error)}, "ValidationException")

    @staticmethod
    def _answer(start_response: Callable, status: int, answer: Any, error_type: str | None) -> list[bytes]:
        payload = json.dumps(answer).encode()
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))]
        if error_type:
            headers.append(("x-amzn-ErrorType", error_type))
        start_response(f"{status} {'OK' if status == 200 else 'Error'}", headers)
        return [payload]

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        if environ.get("PATH_INFO", "").startswith("/_endpoint/"):
            return self._control(environ, start_response)
        scope = SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
        if not scope or scope.group(2) != "braket":
            return self.moto(environ, start_response)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        braket = self.braket
        with braket._lock:
            braket.stats["calls"] += 1
            draw = braket.random.random()
            faults = braket.faults
        if faults.latency_ms:
            time.sleep(faults.latency_ms / 1000)
        if draw < faults.throttle_rate:
            braket.count("throttled")
            return self._answer(start_response, 429, {"message": "Rate exceeded"}, "ThrottlingException")
        if draw < faults.throttle_rate + faults.error_rate:
            braket.count("failed")
            return self._answer(start_response, 500, {"message": "Injected fault"}, "InternalServiceException")
        status, answer, error_type = braket.handle(environ["REQUEST_METHOD"], environ.get("PATH_INFO", ""),
                                                   environ.get("QUERY_STRING", ""), body, scope.group(1))
        return self._answer(start_response, status, answer, error_type)


def serve(host: str = "127.0.0.1", port: int = 0, devices: Iterable[DeviceModel] = DEFAULT_DEVICES) -> tuple[Any, str]:
    """Starts the endpoint in a background thread; returns the server and its URL."""
    from werkzeug.serving import make_server

    holder: dict[str, Any] = {}

    def application(environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        return holder["app"](environ, start_response)

    server = make_server(host, port, application, threaded=True)
    url = f"http://{host}:{server.server_port}"
    holder["app"] = Endpoint(url, devices=devices)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, url


def main() -> None:
    parser = argparse.ArgumentParser(description="A local Amazon Braket endpoint (with moto for S3 and Logs).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4566)
    parser.add_argument("--devices", type=Path, help="A JSON list of DeviceModel fields (default: SV1, DM1, "
                                                       "IonQ Forte-1 and IQM Garnet emulated on local simulators).")
    options = parser.parse_args()
    devices = [DeviceModel(**d) for d in json.loads(options.devices.read_text())] if options.devices else DEFAULT_DEVICES
    server, url = serve(options.host, options.port, devices)
    print(f"Braket endpoint on {url}: export AWS_ENDPOINT_URL={url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.shutdown()

