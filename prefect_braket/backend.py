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

from prefect_braket.job_spec import MAX_JOB_NAME_LENGTH, JobSpec

TERMINAL_STATES = frozenset({"COMPLETED", "FAILED", "CANCELLED"})
JOB_STATES = ("QUEUED", "RUNNING", "COMPLETED", "FAILED", "CANCELLING", "CANCELLED")


class JobNotFoundError(LookupError):
    """No job with this ARN is known to the backend."""


class JobStateError(RuntimeError):
    """A file of a backend's own state is damaged: unreadable, or not what the backend wrote.

    The message names the file, what is wrong with it and the fix; other jobs are not affected,
    so a caller can report it for this job and carry on with the rest."""


class SubmissionInProgress(RuntimeError):
    """Another call with the same client token is still creating its job; retrying finds it."""

    retryable = True


class JobFailedError(RuntimeError):
    """A job ended FAILED or CANCELLED; carries its failure reason and the end of its log."""

    def __init__(self, job_arn: str, status: str, failure_reason: str | None, log_tail: list[str]):
        self.job_arn = job_arn
        self.status = status
        self.failure_reason = failure_reason
        self.log_tail = log_tail
        tail = "\n".join(f"  | {line}" for line in log_tail)
        super().__init__(
            f"Job {job_arn} ended {status}"
            + (f": {failure_reason}" if failure_reason else "")
            + (f"\nLast log lines:\n{tail}" if tail else "")
        )


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


TRANSIENT_ERROR_CODES = frozenset({
    "ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded",
    "InternalServiceException", "InternalServerError", "InternalError", "ServiceUnavailable",
    "ServiceUnavailableException", "SlowDown", "RequestTimeout", "RequestTimeoutException",
})


def is_transient(error: BaseException) -> bool:
    """Whether trying the same call again may succeed: throttling, a 5xx, a dropped connection."""
    # A TimeoutError is a deadline that passed (a wait, a flow), not a call worth repeating.
    if isinstance(error, ConnectionError) or getattr(error, "retryable", False):
        return True
    response = getattr(error, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code", "")
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return code in TRANSIENT_ERROR_CODES or 500 <= int(status or 0) < 600
    return type(error).__name__ in ("EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError")


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
    """What the Prefect layer needs from wherever jobs run."""

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
        the handle's, through `prefect_braket.archive`, in one place for every backend. Raises
        FileNotFoundError, naming the job and where the archive should be, if there is none."""

    def resubmit_job(self, job_arn: str, client_token: str) -> str:
        """Creates a job that replaces `job_arn` (whose instance failed): the same code, data, device
        and settings under `replacement_name`, starting from the failed job's checkpoints, renamed
        for the new job so that `load_job_checkpoint()` finds them. Returns the new job's ARN; the
        same client token returns the same job."""


def backend_for(device_or_arn: str, backend: str | None = None, **options: Any) -> JobBackend:
    """The backend that runs jobs for a device, or that holds the job with this ARN.

    Args:
        device_or_arn: A device ARN ("local:braket/braket_sv", an AWS ARN) or a job ARN.
        backend: "local" for the embedded engine, "aws" for Amazon Braket; by default "local"
            for `local:` ARNs and "aws" for AWS ARNs.
        options: Passed to the backend (the engine's `root`, for example).
    """
    choice = backend or ("local" if device_or_arn.startswith("local:") else "aws")
    if choice == "local":
        from prefect_braket.local_engine import LocalEngine

        return LocalEngine(**options)
    if choice == "aws":
        from prefect_braket.aws_backend import AwsBackend

        parts = device_or_arn.split(":")
        if len(parts) > 3 and parts[3] and "region" not in options:
            options["region"] = parts[3]
        return AwsBackend(**options)
    raise ValueError(f"Unknown backend {backend!r}: use 'local' (embedded engine) or 'aws' (Amazon Braket).")
