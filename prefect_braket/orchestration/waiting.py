"""Prefect tasks for a hybrid job that exists: wait for it, read its result and metrics, cancel it.

A wait forwards the job's log and metrics to the run as it goes (`watcher.JobWatcher`), follows
a replacement when the job's instance is lost, and cancels the job if the wait ends early and
this flow run submitted it (`ownership`). A job that ends FAILED or CANCELLED fails the wait's task
run with its `JobFailedError`, unless the wait is told to return it (`raise_on_failure=False`).

Example:
    ```python
    from prefect import flow
    from prefect_braket import HybridJob, get_job_result, wait_for_job

    @flow
    def follow(arn: str):
        job = HybridJob.attach(arn)
        wait_for_job(job, expected_iterations=10)
        return get_job_result(job)
    ```
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import anyio
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from prefect_braket.core.metrics import MetricType, Statistic
from prefect_braket.orchestration.context import retry_if_transient
from prefect_braket.orchestration.ownership import _forget, cancel_unless_resumable
from prefect_braket.orchestration.watcher import JobWatcher

if TYPE_CHECKING:
    from prefect_braket.orchestration.handle import HybridJob

@task(name="wait-for-braket-job", cache_policy=NO_CACHE, retries=3, retry_delay_seconds=[2, 10, 30],
      retry_jitter_factor=0.5, retry_condition_fn=retry_if_transient)
def wait_for_job(
    job: HybridJob,
    poll_interval_seconds: float = 5.0,
    timeout_seconds: float | None = None,
    expected_iterations: int | None = None,
    table_every_seconds: float = 10.0,
    cancel_on_exit: bool = True,
    resubmit_on_instance_failure: int = 1,
    max_log_lines: int | None = None,
    raise_on_failure: bool = True,
) -> dict[str, Any]:
    """Waits for a job to end, showing its log, events, queue position and metrics as it runs.

    Args:
        job: The job to wait for.
        poll_interval_seconds: The longest pause between polls (they start fast and slow down).
        timeout_seconds: Give up (and cancel the job) after this long.
        expected_iterations: The number of iterations the job logs metrics for, for the progress
            artifact; by default read from a hyperparameter such as `num_iterations` or `num_tasks`.
        table_every_seconds: How often the metrics table artifact is refreshed while the job runs (in
            place: one artifact, so one card in the run's Artifacts tab, however long the job).
        cancel_on_exit: Cancel the job if the wait ends before it does (timeout, interrupt, flow
            cancelled), when this flow run submitted it; a job it only watches keeps running.
        resubmit_on_instance_failure: How many times a job whose instance is lost is resubmitted
            from its checkpoints (the same replacement on every retry of this wait); `job` (this
            object, in this process) then follows the replacement, whose metrics continue the
            same artifacts.
        max_log_lines: How many of the job's log lines this wait forwards to the run logger, up
            to 200 to a log record; by default `$PREFECT_BRAKET_MAX_LOG_LINES`, else 10,000. Lines
            past it are counted, not sent (their metrics are still read), and the wait ends with
            one line saying how many and where to read them (`HybridJob.logs()`, the log's file or
            CloudWatch stream).
        raise_on_failure: Whether a job that ended FAILED or CANCELLED is an error of the wait (its
            task run then ends Failed). A cancelled job is one too: it did not do the work the flow
            waits for, whoever cancelled it. With False the wait logs that error at ERROR and
            returns the job's metadata, for a flow that handles failed jobs itself.

    Returns:
        The final metadata of the job, or of the job that replaced it (its `jobArn`; a handle
        follows it with `job.follow_replacement(meta)`, which `HybridJob.result()` does).

    Raises:
        JobFailedError: the job ended FAILED or CANCELLED (unless `raise_on_failure=False`): one
            line with its failure reason, where its traceback was raised and where its whole log is.
    """
    watcher = JobWatcher(job, expected_iterations, table_every_seconds, poll_interval_seconds, timeout_seconds,
                         resubmit_on_instance_failure=resubmit_on_instance_failure, max_log_lines=max_log_lines)
    try:
        while (delay := watcher.step()) is not None:
            time.sleep(delay)
    except BaseException as error:
        if cancel_on_exit:
            cancel_unless_resumable(job, error, watcher.logger)
        raise
    _forget(job)
    return watcher.ended(raise_on_failure)


@task(name="wait-for-braket-job-async", cache_policy=NO_CACHE, retries=3, retry_delay_seconds=[2, 10, 30],
      retry_jitter_factor=0.5, retry_condition_fn=retry_if_transient)
async def wait_for_job_async(
    job: HybridJob,
    poll_interval_seconds: float = 5.0,
    timeout_seconds: float | None = None,
    expected_iterations: int | None = None,
    table_every_seconds: float = 10.0,
    cancel_on_exit: bool = True,
    resubmit_on_instance_failure: int = 1,
    max_log_lines: int | None = None,
    raise_on_failure: bool = True,
) -> dict[str, Any]:
    """`wait_for_job` for async flows: polls in a worker thread, so many jobs wait side by side.

    Example:
        ```python
        metas = await asyncio.gather(*(wait_for_job_async(job) for job in jobs))
        ```
    """
    watcher = JobWatcher(job, expected_iterations, table_every_seconds, poll_interval_seconds, timeout_seconds,
                         resubmit_on_instance_failure=resubmit_on_instance_failure, max_log_lines=max_log_lines)
    try:
        while (delay := await anyio.to_thread.run_sync(watcher.step)) is not None:
            await asyncio.sleep(delay)
    except BaseException as error:
        if cancel_on_exit:
            await anyio.to_thread.run_sync(cancel_unless_resumable, job, error, watcher.logger)
        raise
    _forget(job)
    return watcher.ended(raise_on_failure)


@task(name="get-braket-job-result", cache_policy=NO_CACHE, retries=3, retry_delay_seconds=[2, 10, 30],
      retry_condition_fn=retry_if_transient)
def get_job_result(job: HybridJob, allow_pickle: bool = False) -> dict[str, Any]:
    """The `results.json` of a job that has ended; raises `JobFailedError` for a failed or cancelled job."""
    return job.fetch_result(allow_pickle)


@task(name="get-braket-job-metrics", cache_policy=NO_CACHE)
def get_job_metrics(
    job: HybridJob, metric_type: MetricType = "timestamp", statistic: Statistic = "max"
) -> dict[str, list]:
    """The job's `log_metric` values as Braket's column dictionary."""
    return job.metrics(metric_type, statistic)


@task(name="cancel-braket-job", cache_policy=NO_CACHE)
def cancel_job(job: HybridJob) -> str:
    """Asks a job to stop; returns CANCELLING, or the status of a job that already ended."""
    status = job.cancel()
    get_run_logger().info("Cancel requested for job %s: %s", job.arn, status)
    return status
