"""Errors every layer shares, and which of them are worth trying again.

Every error of the package's own derives from `PrefectBraketError` and declares whether trying
the same call again may succeed (`retryable`); `is_transient` reads that, and the codes of AWS's
throttling and 5xx answers, in one place. (Errors raised inside a job by the in-job runtime,
such as `BudgetExceededError`, are the runtime's own: it imports nothing of the package.)
"""

from __future__ import annotations


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


class JobFailedError(PrefectBraketError, RuntimeError):
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
