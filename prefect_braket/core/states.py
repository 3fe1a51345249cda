"""The states of Braket's jobs and quantum tasks, in one place for every layer.

Jobs: QUEUED, RUNNING, COMPLETED, FAILED, CANCELLING, CANCELLED (GetJob's `status`); quantum tasks
have the same ended states (GetQuantumTask's `status`), so one set serves both.
"""

from __future__ import annotations

TERMINAL_STATES = frozenset({"COMPLETED", "FAILED", "CANCELLED"})


JOB_STATES = ("QUEUED", "RUNNING", "COMPLETED", "FAILED", "CANCELLING", "CANCELLED")


TASK_STATES = ("CREATED", "QUEUED", "RUNNING", "COMPLETED", "FAILED", "CANCELLING", "CANCELLED")
NO_QUEUE_POSITION = "{kind} is in {status} status. AmazonBraket does not show queue position for this status."


def no_queue_position(kind: str, status: str) -> str:
    """Braket's `queueInfo.message` for a job or task ("Job", "Task") that is not QUEUED."""
    return NO_QUEUE_POSITION.format(kind=kind, status=status)
