"""Devices: what a device is and can do, read before anything is paid for.

`DeviceDescription` reads Braket's GetDevice answer (status, queue depths as Braket's strings,
execution windows, shots range, qubit count) or describes a local simulator, and
`check_runnable` refuses what the device cannot run: an OFFLINE or RETIRED device, too many
qubits, shots out of range, result types that need exact simulation on a QPU.
`LocalSimulator` runs programs on `amazon-braket-default-simulator` and returns Braket's
`GateModelTaskResult` documents.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from prefect_braket.core.errors import PrefectBraketError
from prefect_braket.quantum.programs import Program

# The local simulators take any number of shots (10^6 took 14.5 s and 470 MB); Braket's own
# simulators, SV1 and DM1, take at most 100,000, and so do the local ones here.
LOCAL_MAX_SHOTS = 100_000
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


class DeviceUnavailableError(PrefectBraketError, RuntimeError):
    """The device is OFFLINE or RETIRED, so nothing sent to it would run.

    `retryable` is True for OFFLINE (devices come back), False for RETIRED.
    """

    def __init__(self, message: str, status: str):
        super().__init__(message)
        self.status = status
        self.retryable = status == "OFFLINE"


class DeviceCapabilityError(PrefectBraketError, ValueError):
    """The device cannot run this program as asked (qubits, shots, result types)."""






@dataclass(frozen=True)
class QueueSize:
    """A queue size as Braket reports it (a string such as "19", ">4000" or "0 (3 prioritized job(s) running)")."""

    raw: str
    count: int
    at_least: bool = False
    running: int = 0

    @classmethod
    def parse(cls, raw: str | None) -> "QueueSize":
        text = (raw or "0").strip()
        match = re.match(r"^(>)?\s*(\d+)", text)
        if not match:
            raise ValueError(f"Unreadable queue size {raw!r}.")
        running = re.search(r"\((\d+)\s+prioritized", text)
        return cls(text, int(match.group(2)) + (1 if match.group(1) else 0), bool(match.group(1)),
                   int(running.group(1)) if running else 0)


@dataclass(frozen=True)
class QueueDepth:
    """The device's queues: normal and priority quantum tasks, and hybrid jobs."""

    normal_tasks: QueueSize
    priority_tasks: QueueSize
    jobs: QueueSize


@dataclass(frozen=True)
class ExecutionWindow:
    """A recurring UTC window in which a QPU runs tasks (Braket's `DeviceExecutionWindow`)."""

    day: str
    start: str
    end: str

    def _days(self) -> set[int]:
        if self.day == "Everyday":
            return set(range(7))
        if self.day == "Weekdays":
            return set(range(5))
        if self.day == "Weekend":
            return {5, 6}
        return {DAYS.index(self.day)}

    def openings(self, around: datetime) -> list[tuple[datetime, datetime]]:
        """This window's (start, end) times from the day before `around` to eight days after."""
        spans = []
        base = around.astimezone(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
        start_h, start_m = map(int, self.start.split(":")[:2])
        end_h, end_m = map(int, self.end.split(":")[:2])
        for offset in range(-1, 9):
            day = base + timedelta(days=offset)
            if day.weekday() not in self._days():
                continue
            start = day.replace(hour=start_h, minute=start_m)
            end = day.replace(hour=end_h, minute=end_m)
            if end <= start:  # crosses midnight
                end += timedelta(days=1)
            spans.append((start, end))
        return spans


@dataclass(frozen=True)
class DeviceDescription:
    """What Braket says of a device, or what a local simulator is."""

    arn: str
    name: str
    provider: str
    device_type: str
    status: str
    qubit_count: int
    shots_range: tuple[int, int]
    execution_windows: tuple[ExecutionWindow, ...] = ()
    queue_depth: QueueDepth | None = None
    result_types: dict[str, tuple[int, int]] = field(default_factory=dict)
    cost: dict[str, Any] | None = None

    @property
    def is_qpu(self) -> bool:
        return self.device_type == "QPU"

    @classmethod
    def from_get_device(cls, response: dict[str, Any]) -> "DeviceDescription":
        """Reads Braket's GetDevice response."""
        capabilities = response["deviceCapabilities"]
        if isinstance(capabilities, str):
            capabilities = json.loads(capabilities)
        service = capabilities.get("service", {})
        paradigm = capabilities.get("paradigm", {})
        action = capabilities.get("action", {}).get("braket.ir.openqasm.program", {})
        queues: dict[tuple[str, str | None], str] = {
            (q["queue"], q.get("queuePriority")): q["queueSize"] for q in response.get("deviceQueueInfo") or []
        }
        depth = QueueDepth(
            QueueSize.parse(queues.get(("QUANTUM_TASKS_QUEUE", "Normal"))),
            QueueSize.parse(queues.get(("QUANTUM_TASKS_QUEUE", "Priority"))),
            QueueSize.parse(queues.get(("JOBS_QUEUE", None)) or queues.get(("JOBS_QUEUE", "Normal"))),
        )
        return cls(
            arn=response["deviceArn"],
            name=response["deviceName"],
            provider=response["providerName"],
            device_type=response["deviceType"],
            status=response["deviceStatus"],
            qubit_count=int(paradigm.get("qubitCount") or 0),
            shots_range=tuple(service.get("shotsRange") or (0, 0)),
            execution_windows=tuple(
                ExecutionWindow(w["executionDay"], w["windowStartHour"], w["windowEndHour"])
                for w in service.get("executionWindows") or []
            ),
            queue_depth=depth,
            result_types={
                r["name"].lower(): (int(r.get("minShots") or 0), int(r.get("maxShots") or 0))
                for r in action.get("supportedResultTypes") or []
            },
            cost=service.get("deviceCost"),
        )

    def window_open(self, at: datetime | None = None) -> bool:
        """Whether the device takes tasks at `at` (now by default); devices without windows always do."""
        if not self.execution_windows:
            return True
        at = at or datetime.now(timezone.utc)
        return any(start <= at < end for w in self.execution_windows for start, end in w.openings(at))

    def next_window_opens(self, at: datetime | None = None) -> datetime | None:
        """When the device next takes tasks: `at` itself if a window is open, None if it has no windows."""
        at = at or datetime.now(timezone.utc)
        if self.window_open(at):
            return at
        starts = [start for w in self.execution_windows for start, _ in w.openings(at) if start > at]
        return min(starts) if starts else None


def check_runnable(description: DeviceDescription, program: Program, shots: int) -> None:
    """Raises before submission if the device cannot run `program` with `shots` shots, or if the
    program is not valid OpenQASM 3 (`ProgramSyntaxError`)."""
    program.check_syntax()
    if description.status != "ONLINE":
        raise DeviceUnavailableError(
            f"Device {description.arn} is {description.status}: nothing sent to it would run. "
            + ("It is retired: choose another device." if description.status == "RETIRED"
               else "Wait until it is ONLINE (BraketDevice.status()) or use another device."),
            description.status,
        )
    if not isinstance(shots, int) or isinstance(shots, bool):
        raise DeviceCapabilityError(f"shots must be a whole number, got {shots!r}.")
    low, high = description.shots_range
    if not low <= shots <= high:
        raise DeviceCapabilityError(
            f"{shots} shots is outside what {description.name} takes ({low} to {high})."
            + (" QPUs sample: use shots of at least 1." if shots == 0 and description.is_qpu else "")
            + (f" Run several tasks of at most {high} shots and combine their counts." if shots > high else "")
        )
    needed = program.qubit_count()
    if description.qubit_count and needed > description.qubit_count:
        raise DeviceCapabilityError(
            f"The program uses {needed} qubits; {description.name} has {description.qubit_count}."
        )
    for requested in program.result_types():
        supported = description.result_types.get(requested["type"])
        if description.result_types and supported is None:
            raise DeviceCapabilityError(f"{description.name} does not support the {requested['type']} result type.")
        if supported and not supported[0] <= shots <= supported[1]:
            raise DeviceCapabilityError(
                f"The {requested['type']} result type needs {supported[0]} to {supported[1]} shots on "
                f"{description.name}; {shots} were asked for."
            )




class PriorityWarning(UserWarning):
    """A task inside a hybrid job goes to a device other than the job's, so it waits in the normal queue."""


def job_priority_token(device_arn: str) -> str | None:
    """The job token a task to `device_arn` carries: the running job's, if the device is the job's.

    Inside a hybrid job, tasks to the job's device get its priority queue (and job pricing);
    tasks to any other device run in the normal queue, and a `PriorityWarning` says so.
    """
    import os
    import warnings

    token = os.environ.get("AMZN_BRAKET_JOB_TOKEN")
    if not token:
        return None
    job_device = os.environ.get("AMZN_BRAKET_DEVICE_ARN")
    if job_device == device_arn:
        return token
    warnings.warn(
        f"This hybrid job has priority on {job_device}; this task to {device_arn} runs in that "
        "device's normal queue, at standalone prices.",
        PriorityWarning,
        stacklevel=3,
    )
    return None


def create_quantum_task_request(
    device_arn: str, program: Program, shots: int, bucket: str, key_prefix: str,
    job_token: str | None = None, reservation_arn: str | None = None, tags: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Braket's CreateQuantumTask parameters for an OpenQASM program (the client token is added when sent)."""
    request: dict[str, Any] = {
        "deviceArn": device_arn,
        "action": json.dumps(program.action()),
        "shots": shots,
        "outputS3Bucket": bucket,
        "outputS3KeyPrefix": key_prefix,
    }
    if job_token:
        request["jobToken"] = job_token
    if reservation_arn:
        request["associations"] = [{"arn": reservation_arn, "type": "RESERVATION_TIME_WINDOW_ARN"}]
    if tags:
        request["tags"] = tags
    return request
