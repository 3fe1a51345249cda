"""One job at a time on each QPU: tickets, their order, positions, and waiting for the device.

A job for a QPU is given a ticket when it is created, `queues/{device}/{time}-{id}`, whose name
starts with its submission time in nanoseconds: the queue's order is the tickets' names. The
oldest ticket holds the device; its job's supervisor deletes it when the job ends (`release`),
whatever way it ends. A ticket whose job is gone, ended, or whose supervisor died holds the
device for nobody, and the next supervisor in line removes it (`_holds_device`). Simulators
run any number of jobs at once, and have no tickets.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from prefect_braket.backends.local.processes import pid_alive
from prefect_braket.backends.local.record import JobRecord
from prefect_braket.backends.local.store import (
    ORPHAN_GRACE_SECONDS,
    JobStore,
    referenced_job,
    tickets,
)
from prefect_braket.core.arns import DeviceArn
from prefect_braket.core.errors import JobNotFoundError, JobStateError
from prefect_braket.core.polling import Backoff
from prefect_braket.core.states import no_queue_position

# A waiting job checks the queue quickly at first, then every half second at most: the job ahead
# runs for seconds or hours, and waiting jobs' checks are jittered so as not to come in step.
QUEUE_POLL_MAX_SECONDS = 0.5


def queue_name(device: str) -> str:
    """The name of a device's queue directory: `provider-name` (`ionq-Forte-1`)."""
    return DeviceArn.parse(device).slug


def new_ticket(root: Path, device: str, job_id: str) -> Path | None:
    """Where the ticket of a new job for `device` goes, or None for a simulator (no queue)."""
    device_arn = DeviceArn.parse(device)
    if not device_arn.is_qpu:
        return None
    return root / "queues" / device_arn.slug / f"{time.time_ns():020d}-{job_id}"


def ahead_of(ticket: Path) -> list[Path]:
    """The tickets before `ticket` in its queue, oldest (the device's holder) first."""
    return [t for t in tickets(ticket.parent) if t.name < ticket.name]


def release(record: JobRecord) -> None:
    """Frees the device a job held or waited for: its ticket is deleted (a job ends only once)."""
    if record.engine.queue_ticket:
        record.engine.queue_ticket.unlink(missing_ok=True)


def queue_info(record: JobRecord) -> dict[str, str]:
    """GetJob's `queueInfo`: a QUEUED job's position, the number of jobs ahead of it on its QPU."""
    if record.status != "QUEUED":
        return {"queue": "JOBS_QUEUE", "position": "None", "message": no_queue_position("Job", record.status)}
    ticket = record.engine.queue_ticket
    return {"queue": "JOBS_QUEUE", "position": str(len(ahead_of(ticket)) if ticket else 0)}


def wait_for_device(job: JobStore, ticket: Path, stopped: Callable[[], bool]) -> bool:
    """Waits until `ticket` is the oldest in its queue: True then, False if the job was cancelled
    first (`stopped`, or its record CANCELLING). Tickets ahead that hold the device for nobody
    are removed on the way."""
    backoff, head = Backoff(max_seconds=QUEUE_POLL_MAX_SECONDS), None
    while not stopped():
        if job.read().status == "CANCELLING":
            return False
        ahead = ahead_of(ticket)
        if not ahead:
            return True
        if ahead[0] != head:  # the queue moved: the next holder may end soon too
            head = ahead[0]
            backoff.reset()
        if not _holds_device(job.root, head):
            head.unlink(missing_ok=True)
            continue
        time.sleep(backoff.next())
    return False


def _holds_device(root: Path, ticket: Path) -> bool:
    """Whether the job of the ticket at the head of a queue may be running on the device: it has
    not ended, and its supervisor lives (or, not yet on record, may still be starting)."""
    try:
        holder = referenced_job(root, ticket)
        record = holder.read()
    except FileNotFoundError:
        return False  # released as it was read
    except (JobNotFoundError, JobStateError) as error:
        # A ticket that leads to no readable job holds the device for nobody: its job's own
        # supervisor, if any, cannot read the record either, and ends it.
        print(f"Passing over the queue ticket {ticket}: {error}", flush=True)
        return False
    if record.ended:
        return False
    if record.engine.supervisor_pid is not None:
        return pid_alive(record.engine.supervisor_pid, str(holder.dir))
    age = (datetime.now(timezone.utc) - record.created_at).total_seconds()
    return age <= ORPHAN_GRACE_SECONDS * 3
