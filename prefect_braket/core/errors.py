"""Errors every layer shares, and which of them are worth trying again.

Every error of the package's own derives from `PrefectBraketError` and declares whether trying
the same call again may succeed (`retryable`); `is_transient` reads that, and the codes of AWS's
throttling and 5xx answers, in one place. (Errors raised inside a job by the in-job runtime,
such as `BudgetExceededError`, are the runtime's own: it imports nothing of the package.)
"""

from __future__ import annotations

import re
from typing import Any


class PrefectBraketError(Exception):
    """An error of prefect-braket's own; its message names the value at fault and the fix."""

    retryable: bool = False  # whether the same call, made again, may succeed


class JobNotFoundError(PrefectBraketError, LookupError):
    """No job with this ARN is known to the backend."""


class JobStateError(PrefectBraketError, RuntimeError):
    """A file of a backend's own state is damaged: unreadable, or not what the backend wrote.

    The message names the file, what is wrong with it and the fix; other jobs are not affected,
    so a caller can report it for this job and carry on with the rest."""


class SubmissionInProgress(PrefectBraketError, RuntimeError):
    """Another call with the same client token is still creating its job; retrying finds it."""

    retryable = True


LOG_TAIL_LINES = 20  # of a job's log, kept on the error that says the job did not complete


def job_ended(meta: dict[str, Any]) -> str:
    """How a job ended, in a line: `Job train-1 FAILED after 12.3 s: AlgorithmError: ValueError: boom`.

    The time is from the job's start (its creation if it never started) to its end; only the first
    line of a failure reason is shown."""
    began, ended = meta.get("startedAt") or meta.get("createdAt"), meta.get("endedAt")
    after = f" after {(ended - began).total_seconds():.1f} s" if began and ended else ""
    reason = (meta.get("failureReason") or "").strip().split("\n", 1)[0]
    return f"Job {meta['jobName']} {meta['status']}{after}" + (f": {reason}" if reason else "")


_FRAME = re.compile(r'^\s*File "[^"]*", line \d+, in \S+')


def _last_frame(log_tail: list[str]) -> str | None:
    """Where a traceback at the end of a job's log was raised: its innermost `File ..., line ..., in ...`."""
    start = max((i for i, line in enumerate(log_tail) if line.startswith("Traceback (most recent call last)")),
                default=None)
    if start is None:
        return None
    return next((line.strip() for line in reversed(log_tail[start:]) if _FRAME.match(line)), None)


class JobFailedError(PrefectBraketError, RuntimeError):
    """A job ended FAILED or CANCELLED; carries its failure reason and the end of its log (`log_tail`).

    The message is one line, whatever the job printed: how the job ended, the innermost frame of
    the traceback its log ends with, and where its whole log is. The job's own traceback is in
    that log (and, in a flow, forwarded to the flow run's logs), so it is not repeated here.

    Example:
        ```python
        try:
            job.result()
        except JobFailedError as error:
            error.status, error.failure_reason, error.log_tail[-1]
        ```
    """

    def __init__(self, job_arn: str, status: str, failure_reason: str | None, log_tail: list[str], *,
                 ended: str | None = None, log_source: str | None = None):
        self.job_arn = job_arn
        self.status = status
        self.failure_reason = failure_reason
        self.log_tail = log_tail
        if ended is None:
            reason = (failure_reason or "").strip().split("\n", 1)[0]
            ended = f"Job {job_arn} {status}" + (f": {reason}" if reason else "")
        frame = _last_frame(log_tail)
        where = f", or {log_source}" if log_source else ""
        super().__init__(ended + (f" (raised at {frame})" if frame else "")
                         + f'. Its whole log: HybridJob.attach("{job_arn}").logs(){where}.')

    @classmethod
    def of(cls, meta: dict[str, Any], log_tail: list[str], log_source: str | None = None) -> "JobFailedError":
        """The error of the ended job `meta` (GetJob's answer) describes."""
        return cls(meta["jobArn"], meta["status"], meta.get("failureReason"), log_tail[-LOG_TAIL_LINES:],
                   ended=job_ended(meta), log_source=log_source)

    def __reduce__(self) -> tuple:
        # Prefect stores a failed task's exception with its state, pickled; by default unpickling
        # would call this class with the message alone.
        return _restored, (type(self), str(self), self.__dict__)


def _restored(cls: type[JobFailedError], message: str, fields: dict[str, Any]) -> JobFailedError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(fields)
    return error


TRANSIENT_ERROR_CODES = frozenset({
    "ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded",
    "InternalServiceException", "InternalServerError", "InternalError", "ServiceUnavailable",
    "ServiceUnavailableException", "SlowDown", "RequestTimeout", "RequestTimeoutException",
})


def is_transient(error: BaseException) -> bool:
    """Whether trying the same call again may succeed: throttling, a 5xx, a dropped connection."""
    # A TimeoutError is a deadline that passed (a wait, a flow), not a call worth repeating.
    if isinstance(error, ConnectionError) or isinstance(error, PrefectBraketError) and error.retryable:
        return True
    response = getattr(error, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code", "")
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return code in TRANSIENT_ERROR_CODES or 500 <= int(status or 0) < 600
    return type(error).__name__ in ("EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError")
