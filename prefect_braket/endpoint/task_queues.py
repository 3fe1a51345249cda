"""Each device's queues of quantum tasks, and the worker threads that run them on local simulators.

A device has Braket's two queues: Priority, for tasks carrying the token of a job that runs on
the device, and Normal; its workers take the Priority queue's head first. A device runs
`concurrency` tasks at once (a QPU one), only while it shows ONLINE (faults included) and inside
an execution window; each task takes at least its `seconds_per_task`. A finished task's
`results.json` goes to the emulated S3, unless it was cancelled meanwhile or a fault drops it.

Queue positions and sizes are strings, as Braket reports them: position 1 runs next, and large
numbers show as ">2000" (positions) or ">4000" (sizes).
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from prefect_braket.core.states import no_queue_position
from prefect_braket.endpoint.devices import DeviceModel
from prefect_braket.endpoint.records import POSITION_CAP, SIZE_CAP, TaskRecord, capped
from prefect_braket.endpoint.shared import SharedState
from prefect_braket.endpoint.task_results import result_document
from prefect_braket.quantum.programs import plain_value

IDLE_WAIT_SECONDS = 0.5  # execution windows open with time, not with a notification
FAILURE_REASON_CHARS = 1024


@dataclass
class DeviceQueue:
    """One device's queued tasks, in order, Priority and Normal."""

    priority: deque[TaskRecord] = field(default_factory=deque)
    normal: deque[TaskRecord] = field(default_factory=deque)

    def of(self, record: TaskRecord) -> deque[TaskRecord]:
        """The queue a task waits in."""
        return self.priority if record.priority else self.normal

    def pop_next(self) -> TaskRecord | None:
        queue = self.priority or self.normal
        return queue.popleft() if queue else None

    def drain(self) -> list[TaskRecord]:
        records = [*self.priority, *self.normal]
        self.priority.clear()
        self.normal.clear()
        return records


class TaskQueues:
    """The queues of every device served, and their workers. Its methods are called with the
    shared lock held; the workers take it themselves."""

    def __init__(self, shared: SharedState, client: Callable[[str], Any]) -> None:
        self._shared = shared
        self._client = client
        self._queues: dict[str, DeviceQueue] = {}
        self.workers: dict[str, int] = {}  # live worker threads per device ARN

    def follow_devices(self) -> None:
        """Matches the queues to a new device set: the queued tasks of a device that went fail; a
        device that came gets a queue; workers start to reach each device's concurrency (those
        beyond it retire by themselves, `_next`)."""
        for arn, queue in self._queues.items():
            if arn not in self._shared.devices:
                for record in queue.drain():
                    record.end("FAILED", f"Device {arn} was removed from this endpoint.")
        for device in self._shared.devices.values():
            self._queues.setdefault(device.arn, DeviceQueue())
            for index in range(self.workers.get(device.arn, 0), device.concurrency):
                threading.Thread(target=self._work, args=(device.arn, index), daemon=True).start()
                self.workers[device.arn] = index + 1

    def enqueue(self, record: TaskRecord) -> None:
        self._queues[record.device_arn].of(record).append(record)
        self._shared.wake.notify_all()

    def cancel_queued(self, record: TaskRecord) -> None:
        self._queues[record.device_arn].of(record).remove(record)
        record.end("CANCELLED")

    def queue_info(self, record: TaskRecord) -> dict[str, str]:
        """GetQuantumTask's `queueInfo`: a queued task's position, or why there is none."""
        info = {"queue": "QUANTUM_TASKS_QUEUE", "queuePriority": "Priority" if record.priority else "Normal"}
        if record.status == "QUEUED":
            queue = self._queues[record.device_arn].of(record)
            info["position"] = capped(1 + next(i for i, r in enumerate(queue) if r is record), POSITION_CAP)
        else:
            info.update(position="None", message=no_queue_position("Task", record.status))
        return info

    def device_queue_info(self, device_arn: str) -> list[dict[str, str]]:
        """GetDevice's `deviceQueueInfo` entries for quantum tasks, Normal then Priority."""
        queue = self._queues[device_arn]
        return [{"queue": "QUANTUM_TASKS_QUEUE", "queueSize": capped(len(waiting), SIZE_CAP), "queuePriority": name}
                for name, waiting in (("Normal", queue.normal), ("Priority", queue.priority))]

    # -- workers ------------------------------------------------------------------------------------

    def _work(self, device_arn: str, index: int) -> None:
        while (task := self._next(device_arn, index)) is not None:
            self._run(*task)

    def _next(self, device_arn: str, index: int) -> tuple[TaskRecord, DeviceModel] | None:
        """Blocks until the device may run a task and one is queued; None when this worker is no
        longer wanted (the device went, or runs fewer tasks at once)."""
        shared = self._shared
        with shared.wake:
            while True:
                device = shared.devices.get(device_arn)
                if device is None or index >= device.concurrency:
                    self.workers[device_arn] -= 1
                    return None
                if shared.status_of(device) == "ONLINE" and device.window_open():
                    record = self._queues[device_arn].pop_next()
                    if record is not None:
                        record.status = "RUNNING"
                        return record, device
                shared.wake.wait(timeout=IDLE_WAIT_SECONDS)

    def _run(self, record: TaskRecord, device: DeviceModel) -> None:
        started = time.monotonic()
        try:
            document = result_document(record, device)
            time.sleep(max(0.0, device.seconds_per_task - (time.monotonic() - started)))
            status, reason = self._deliver(record, document), None
        except Exception as error:  # the task ended; it must not look RUNNING forever
            status, reason = "FAILED", f"{type(error).__name__}: {error}"[:FAILURE_REASON_CHARS]
        with self._shared.lock:
            record.end(status, reason)

    def _deliver(self, record: TaskRecord, document: dict[str, Any]) -> str:
        """Puts `results.json` in S3, unless the task was cancelled while it ran or a fault drops
        it; returns the status the task ends in."""
        with self._shared.lock:
            cancelled = record.status == "CANCELLING"
            dropped = not cancelled and self._shared.faults.take_missing_result()
            if dropped:
                self._shared.stats.results_dropped += 1
        if not cancelled and not dropped:
            self._client("s3").put_object(Bucket=record.output_bucket, Key=f"{record.output_directory}/results.json",
                                          Body=json.dumps(plain_value(document)))
        return "CANCELLED" if cancelled else "COMPLETED"

