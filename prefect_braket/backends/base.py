"""The small, typed interface between the Prefect layer and the places jobs run.

A backend creates, describes, cancels and reads jobs in Braket's own terms (GetJob-shaped
metadata, log lines, `model.tar.gz`). The embedded engine and the Amazon Braket backend both
implement it; nothing here or in a backend imports Prefect.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from prefect_braket.core.spec import MAX_JOB_NAME_LENGTH, JobSpec

# Braket's jobs run on SageMaker's machinery, which reports faults of its own (not of the job's code)
# as "InternalServerError: ..."; the embedded engine reports a lost job process the same way.
INSTANCE_FAILURE_PREFIX = "InternalServerError"
REPLACES_TAG = "prefect-braket:replaces"  # on a resubmitted job: the ARN of the job it replaces


def is_instance_failure(failure_reason: str | None) -> bool:
    """Whether a job failed because its instance was lost rather than because of its code or request.

    Such a job can be run again from its checkpoints (`JobBackend.resubmit_job`)."""
    return (failure_reason or "").startswith(INSTANCE_FAILURE_PREFIX)


def replacement_name(job_name: str) -> str:
    """The name of the job that replaces `job_name` after an instance failure: `name-r1`, `name-r2`, ..."""
    match = re.fullmatch(r"(.*)-r(\d+)", job_name)
    base, number = (match.group(1), int(match.group(2)) + 1) if match else (job_name, 1)
    suffix = f"-r{number}"
    return base[: MAX_JOB_NAME_LENGTH - len(suffix)].rstrip("-") + suffix


def replacement_token(job_arn: str) -> str:
    """The client token of the job replacing `job_arn`: whoever resubmits it gets the same job."""
    return hashlib.sha256(f"{job_arn}:replacement".encode()).hexdigest()[:64]


# The most a `read_log` call returns, in bytes (about: CloudWatch answers in pages): a job that
# wrote 200 MB is read in bounded steps, between which a waiting flow can stop.
LOG_CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class LogChunk:
    """Log lines read from a cursor on, and the cursor to continue from.

    A read returns at most about `LOG_CHUNK_BYTES` of lines; `more` says it stopped at that bound,
    so the next read from `cursor` has lines ready at once. `source` says where the whole log is,
    for people to read it: a file path, a CloudWatch Logs group and stream.
    """

    lines: list[str]
    cursor: Any = None
    timestamps: list[float] = field(default_factory=list)
    more: bool = False
    source: str | None = None


@runtime_checkable
class JobBackend(Protocol):
    """What the Prefect layer needs from wherever jobs run.

    A backend declares what differs between the places jobs run (`name`, `bills_instances`,
    `check_dependencies`), so that callers ask it rather than test which backend it is.
    """

    name: str
    """The name the registry knows the backend by (`registry.backend_for(..., backend=name)`): "local", "aws"."""

    bills_instances: bool
    """Whether a job's classical instances cost money while it runs: on Amazon Braket they do, by the
    hour of their `instanceType` (a budget counts that price); the embedded engine's are local
    processes, which cost nothing."""

    def check_dependencies(self, requirements: list[str]) -> None:
        """Raises, before the job is created, if its requirements (requirements.txt lines) cannot be
        met where it will run. The embedded engine runs jobs in this Python environment and checks
        it (`core.requirements.check_requirements`: ModuleNotFoundError naming what is missing);
        Braket's container installs them, so the AWS backend checks nothing."""

    def create_job(self, spec: JobSpec, client_token: str | None = None) -> str:
        """Creates the job and returns its ARN; the same client token returns the same job."""

    def get_job(self, job_arn: str) -> dict[str, Any]:
        """GetJob-shaped metadata: status, events, timestamps, failureReason, queueInfo, ..."""

    def cancel_job(self, job_arn: str) -> str:
        """Asks the job to stop; returns CANCELLING or CANCELLED (a finished job's own status)."""

    def read_log(self, job_arn: str, cursor: Any = None) -> LogChunk:
        """The job's log lines after `cursor` (from the start when None), at most about
        `LOG_CHUNK_BYTES` of them: read again from the returned cursor while `more` is True."""

    def fetch_output_archive(self, job_arn: str, destination_file: Path) -> Path:
        """Copies the job's `model.tar.gz`, as it is, to `destination_file`; returns that path.

        A backend only delivers the archive: what a job wrote is hostile input, and reading it is
        the handle's, through `prefect_braket.core.archive`, in one place for every backend. Raises
        FileNotFoundError, naming the job and where the archive should be, if there is none."""

    def resubmit_job(self, job_arn: str, client_token: str) -> str:
        """Creates a job that replaces `job_arn` (whose instance failed): the same code, data, device
        and settings under `replacement_name`, starting from the failed job's checkpoints, renamed
        for the new job so that `load_job_checkpoint()` finds them. Returns the new job's ARN; the
        same client token returns the same job."""


