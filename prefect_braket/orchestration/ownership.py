"""Whose job it is: only the flow run that submitted a job cancels it.

A job submitted in a flow run carries the run's id as a tag (`OWNER_TAG`). When a wait stops
early (a timeout, an interrupt) or the flow run crashes or is cancelled, that run's jobs are
cancelled; a flow that only watches somebody else's job leaves it running. The tag travels with
the job (to a replacement after a lost instance too), so this holds in every process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prefect.context import FlowRunContext
from prefect.logging import get_logger

from prefect_braket.core.errors import is_transient
from prefect_braket.core.states import TERMINAL_STATES
from prefect_braket.orchestration.context import current_flow_run_id
from prefect_braket.orchestration.prefect_api import on_flow_run_end

if TYPE_CHECKING:
    from prefect_braket.orchestration.handle import HybridJob

OWNER_TAG = "prefect-braket:flow-run"  # on a job submitted in a flow run: the one run that may cancel it


def submitted_by_this_flow_run(job: HybridJob) -> bool:
    """Whether the current flow run submitted `job` (or the job it replaced), and so may cancel it.

    Watching a job is not owning it: a flow that attaches to somebody else's job and stops waiting
    (a timeout, Ctrl-C) must leave the job to its owner. The owner is a tag on the job, so this
    holds in every process and for retries of the submitting flow run.
    """
    run = current_flow_run_id()
    tags = job.metadata(use_cached_value=True).get("tags") or {}
    return run is not None and tags.get(OWNER_TAG) == run


def cancel_unless_resumable(job: HybridJob, error: BaseException, logger: Any) -> None:
    """Cancels a job whose wait stopped early, unless the error is transient (a retry resumes the
    wait) or the job is not this flow run's own (`submitted_by_this_flow_run`)."""
    if isinstance(error, Exception) and is_transient(error):
        return
    if not submitted_by_this_flow_run(job):
        logger.info("Stopped waiting for job %s (%s); it keeps running, since this flow run did not submit it.",
                    job.arn, type(error).__name__)
        return
    if job.state() not in TERMINAL_STATES:
        status = job.cancel()
        logger.warning("Waiting for job %s stopped early (%s); the job was cancelled (%s).",
                       job.arn, type(error).__name__, status)


_unfinished: dict[Any, set[HybridJob]] = {}


def _cancel_jobs_of_ended_flow(flow: Any, flow_run: Any, state: Any) -> None:
    for job in _unfinished.pop(flow_run.id, set()):
        if job.state() not in TERMINAL_STATES:
            job.cancel()
            get_logger("prefect_braket").warning(
                "Flow run %s ended %s; its job %s was cancelled.", flow_run.name, state.name, job.arn
            )


def cancel_with_flow_run(job: HybridJob) -> None:
    """Cancels `job` if the current flow run crashes or is cancelled before the job ends.

    A hook is added to the running flow (once); it cancels the flow run's unfinished jobs.
    """
    context = FlowRunContext.get()
    if context is not None and context.flow_run is not None and on_flow_run_end(_cancel_jobs_of_ended_flow):
        _unfinished.setdefault(context.flow_run.id, set()).add(job)


def _forget(job: HybridJob) -> None:
    for jobs in _unfinished.values():
        jobs.discard(job)
