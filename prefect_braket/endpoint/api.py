"""Braket's REST-JSON API (`BraketApi`): its routes, the faults each call may meet, and the handlers.

A handler takes the path's parts, then the JSON body (`payload`), the region the request was
signed for and the parsed query string, and returns the answer's body; it raises a `BraketError`
for Braket's errors. Quantum tasks go to the per-device queues (`task_queues`), jobs to the
embedded engine (`job_bridge`).
"""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any, Callable, Iterable
from urllib.parse import parse_qs, unquote

from prefect_braket.backends.local.engine import LocalEngine
from prefect_braket.core.states import TERMINAL_STATES
from prefect_braket.endpoint.devices import DEFAULT_DEVICES, OPENQASM_ACTION, DeviceModel
from prefect_braket.endpoint.errors import BraketError, Conflict, ValidationError
from prefect_braket.endpoint.faults import Faults, Stats
from prefect_braket.endpoint.job_bridge import JobBridge
from prefect_braket.endpoint.records import Registry, TaskRecord, task_arn
from prefect_braket.endpoint.search import (
    JOB_SUMMARY,
    TASK_FILTERS,
    TASK_SUMMARY,
    search,
    search_devices,
)
from prefect_braket.endpoint.shared import SharedState
from prefect_braket.endpoint.task_queues import TaskQueues
from prefect_braket.quantum.programs import Program

Answer = tuple[int, Any, str | None]  # HTTP status, body, x-amzn-ErrorType

# Each route's success status is the `responseCode` of its operation in botocore's Braket model.
ROUTES = tuple((verb, re.compile(pattern), handler, status) for verb, pattern, handler, status in (
    ("GET", r"/device/(.+)", "get_device", 200),
    ("POST", r"/devices", "search_devices", 200),
    ("POST", r"/quantum-task", "create_quantum_task", 201),
    ("PUT", r"/quantum-task/(.+)/cancel", "cancel_quantum_task", 200),
    ("GET", r"/quantum-task/(.+)", "get_quantum_task", 200),
    ("POST", r"/quantum-tasks", "search_quantum_tasks", 200),
    ("POST", r"/job", "create_job", 201),
    ("PUT", r"/job/(.+)/cancel", "cancel_job", 200),
    ("GET", r"/job/(.+)", "get_job", 200),
    ("POST", r"/jobs", "search_jobs", 200),
))


def _wants_queue_info(query: dict[str, list[str]]) -> bool:
    return "QueueInfo" in query.get("additionalAttributeNames", [])


class BraketApi:
    """The Braket part of the endpoint: devices with queues, quantum tasks run on local simulators,
    jobs run on the embedded engine.

    Args:
        client: Gives the boto3 client of a service ("s3", "logs") of the emulated AWS.
        engine: Runs the jobs.
        devices: The devices served at first (`set_devices` replaces them).
    """

    def __init__(
        self, client: Callable[[str], Any], engine: LocalEngine, devices: Iterable[DeviceModel] = DEFAULT_DEVICES
    ):
        self._shared = SharedState()
        self._tasks: Registry[TaskRecord] = Registry("Quantum task")
        self._queues = TaskQueues(self._shared, client)
        self._jobs = JobBridge(self._shared, client, engine)
        self.set_devices(devices)

    @property
    def devices(self) -> list[DeviceModel]:
        return list(self._shared.devices.values())

    @property
    def faults(self) -> Faults:
        return self._shared.faults

    @property
    def stats(self) -> Stats:
        return self._shared.stats

    @property
    def _workers(self) -> dict[str, int]:
        """Live task workers per device (tests watch them retire)."""
        return self._queues.workers

    def set_devices(self, devices: Iterable[DeviceModel]) -> None:
        """Replaces the device set. Queued tasks of devices that stay keep their places; those of
        devices that go fail. Workers are added or retire to match each device's concurrency."""
        with self._shared.wake:
            self._shared.devices = {d.arn: d for d in devices}
            self._queues.follow_devices()
            self._shared.wake.notify_all()

    def set_faults(self, faults: Faults) -> None:
        self._shared.set_faults(faults)

    # -- dispatch ----------------------------------------------------------------------------------

    def handle(self, method: str, path: str, query: str, body: bytes, region: str) -> Answer:
        """Answers one Braket call, faults included: (HTTP status, body, error type or None)."""
        fault = self._injected_fault()
        if fault is not None:
            return fault
        for verb, pattern, handler, status in ROUTES:
            match = pattern.fullmatch(path)
            if verb == method and match:
                return self._call(getattr(self, handler), [unquote(g) for g in match.groups()], body, query, region,
                                  status)
        return 404, {"message": f"{method} {path} is not served by this endpoint."}, "ResourceNotFoundException"

    def _injected_fault(self) -> Answer | None:
        """This call's draw from the faults: added latency, then maybe throttled or a 500."""
        shared = self._shared
        with shared.lock:
            shared.stats.calls += 1
            draw = shared.random.random()
            faults = shared.faults
        if faults.latency_ms:
            time.sleep(faults.latency_ms / 1000)
        if draw >= faults.throttle_rate + faults.error_rate:
            return None
        with shared.lock:
            if draw < faults.throttle_rate:
                shared.stats.throttled += 1
                return 429, {"message": "Rate exceeded"}, "ThrottlingException"
            shared.stats.failed += 1
            return 500, {"message": "Injected fault"}, "InternalServiceException"

    @staticmethod
    def _call(handler: Callable[..., dict[str, Any]], arguments: list[str], body: bytes, query: str,
              region: str, status: int) -> Answer:
        try:
            payload = json.loads(body) if body else {}
            return status, handler(*arguments, payload=payload, region=region, query=parse_qs(query)), None
        except BraketError as error:
            return error.status, {"message": str(error)}, error.code
        except KeyError as error:
            return 400, {"message": f"Invalid request: the field {error} is missing."}, "ValidationException"
        except (ValueError, TypeError) as error:
            return 400, {"message": f"Invalid request: {error}"}, "ValidationException"
        except Exception as error:  # reported as Braket reports its own faults, not as an HTML page
            return 500, {"message": f"{type(error).__name__}: {error}"}, "InternalServiceException"

    # -- devices ---------------------------------------------------------------------------------------

    def get_device(self, arn: str, payload: dict[str, Any], region: str, query: dict[str, list[str]]) -> dict[str, Any]:
        device = self._shared.device_in(arn, region)
        with self._shared.lock:
            task_queues = self._queues.device_queue_info(device.arn)
            summary = device.summary(self._shared.status_of(device))
        return {**summary, "deviceCapabilities": json.dumps(device.capabilities()),
                "deviceQueueInfo": [*task_queues, self._jobs.jobs_queue_info(device.arn)]}

    def search_devices(self, payload: dict[str, Any], region: str, query: dict[str, list[str]]) -> dict[str, Any]:
        with self._shared.lock:
            devices = [d.summary(self._shared.status_of(d)) for d in self._shared.devices.values()
                       if d.region in ("", region)]
        return search_devices(devices, payload)

    # -- quantum tasks -----------------------------------------------------------------------------------

    def create_quantum_task(self, payload: dict[str, Any], region: str, query: dict[str, list[str]]) -> dict[str, Any]:
        token = payload.get("clientToken")
        with self._shared.lock:
            if (earlier := self._earlier_task(token)) is not None:
                return earlier
        record = self._new_task(payload, region)
        with self._shared.lock:
            if (earlier := self._earlier_task(token)) is not None:  # a concurrent call with the same token won
                return earlier
            self._tasks.add(record, token)
            self._queues.enqueue(record)
            self._shared.stats.tasks_created += 1
        return {"quantumTaskArn": record.arn}

    def _earlier_task(self, client_token: str | None) -> dict[str, Any] | None:
        """CreateQuantumTask's answer when its client token already created a task: that task."""
        arn = self._tasks.created_by(client_token)
        if arn is None:
            return None
        self._shared.stats.tasks_deduplicated += 1
        return {"quantumTaskArn": arn}

    def _new_task(self, payload: dict[str, Any], region: str) -> TaskRecord:
        """The task a CreateQuantumTask request asks for, refused as Braket refuses it: a device not
        served in this region or unavailable, shots out of its range, a program that does not parse
        or needs more qubits than the device has."""
        device = self._shared.device_in(payload["deviceArn"], region, missing=ValidationError)
        self._shared.check_available(device)
        shots = int(payload["shots"])
        if not device.shots_range[0] <= shots <= device.shots_range[1]:
            raise ValidationError(f"{shots} shots is outside {device.name}'s range {device.shots_range}.")
        action = json.loads(payload["action"])
        kind = (action.get("braketSchemaHeader") or {}).get("name", OPENQASM_ACTION)
        if kind != OPENQASM_ACTION:
            raise ValidationError(f"Action {kind!r} is not run by this endpoint: send an OpenQASM program "
                                  f"({OPENQASM_ACTION}; Braket's SDK sends circuits so by default).")
        program = Program(action["source"], action.get("inputs") or {})
        program.check_syntax()  # Braket refuses such a program at creation, not when it runs
        if device.qubits and program.qubit_count() > device.qubits:
            raise ValidationError(
                f"The program uses {program.qubit_count()} qubits; {device.name} has {device.qubits}.")
        job_arn, priority = self._jobs.priority_for(payload.get("jobToken"), device.arn)
        task_id = str(uuid.uuid4())
        return TaskRecord(arn=task_arn(region, task_id), device_arn=device.arn, shots=shots,
                          output_bucket=payload["outputS3Bucket"],
                          output_directory=f"{payload['outputS3KeyPrefix'].rstrip('/')}/{task_id}",
                          program=program, priority=priority, device_parameters=payload.get("deviceParameters") or "{}",
                          tags=payload.get("tags") or {}, job_arn=job_arn)

    def get_quantum_task(
        self, arn: str, payload: dict[str, Any], region: str, query: dict[str, list[str]]
    ) -> dict[str, Any]:
        with self._shared.lock:
            record = self._tasks.get(arn)
            answer = record.answer()
            if _wants_queue_info(query):
                answer["queueInfo"] = self._queues.queue_info(record)
            return answer

    def cancel_quantum_task(
        self, arn: str, payload: dict[str, Any], region: str, query: dict[str, list[str]]
    ) -> dict[str, Any]:
        """A queued task is cancelled at once; a running one is CANCELLING until its run ends."""
        with self._shared.lock:
            record = self._tasks.get(arn)
            if record.status in TERMINAL_STATES:
                raise Conflict(f"Quantum task {arn} has already ended {record.status}.")
            if record.status == "QUEUED":
                self._queues.cancel_queued(record)
            else:
                record.status = "CANCELLING"
            return {"quantumTaskArn": arn, "cancellationStatus": "CANCELLED" if record.status == "CANCELLED"
                    else "CANCELLING"}

    def search_quantum_tasks(self, payload: dict[str, Any], region: str, query: dict[str, list[str]]) -> dict[str, Any]:
        with self._shared.lock:
            tasks = [record.answer() for record in self._tasks.in_region(region)]
        return search(tasks, payload, TASK_FILTERS, TASK_SUMMARY, "quantumTasks")

    # -- jobs ---------------------------------------------------------------------------------------------

    def create_job(self, payload: dict[str, Any], region: str, query: dict[str, list[str]]) -> dict[str, Any]:
        return {"jobArn": self._jobs.create(payload, region)}

    def get_job(self, arn: str, payload: dict[str, Any], region: str, query: dict[str, list[str]]) -> dict[str, Any]:
        return self._jobs.answer(arn, _wants_queue_info(query))

    def cancel_job(self, arn: str, payload: dict[str, Any], region: str, query: dict[str, list[str]]) -> dict[str, Any]:
        return self._jobs.cancel(arn)

    def search_jobs(self, payload: dict[str, Any], region: str, query: dict[str, list[str]]) -> dict[str, Any]:
        return search(self._jobs.summaries(region), payload, JOB_SUMMARY, JOB_SUMMARY, "jobs")
