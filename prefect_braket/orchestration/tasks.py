"""Prefect tasks for the life of a hybrid job: submit, wait, result, metrics, cancel.

Submission is idempotent: the client token comes from the task run's place in its flow run, so
a retried submission (or a retried flow) re-attaches to the job it started. Waiting forwards the
job's log lines to the run logger (many to a record, up to `max_log_lines` of them), logs its
events and queue position as they change, and turns its `log_metric` lines into a progress
artifact and a metrics table artifact while it runs. A wait that ends early (timeout,
cancellation, crash) cancels the job it was waiting for if this flow run submitted it
(`OWNER_TAG`); a job it only watches is left to its owner.

Example:
    ```python
    from prefect import flow
    from prefect_braket import JobSpec, submit_job, wait_for_job, get_job_result

    @flow
    def run(spec: JobSpec):
        job = submit_job(spec)
        wait_for_job(job, expected_iterations=10)
        return get_job_result(job)
    ```
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import os
import random
import time
from datetime import datetime, timezone
from typing import Any

import anyio
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.concurrency.sync import concurrency
from prefect.context import FlowRunContext, TaskRunContext
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from prefect.logging import get_logger, get_run_logger

from prefect_braket.backends.base import JobBackend
from prefect_braket.backends.registry import backend_for
from prefect_braket.core.errors import is_transient
from prefect_braket.core.metrics import MetricsParser, MetricType, Statistic
from prefect_braket.core.spec import JobSpec
from prefect_braket.core.states import TERMINAL_STATES
from prefect_braket.orchestration.context import (
    artifact_key,
    client_token,
    current_flow_run_id,
    retry_if_transient,
)
from prefect_braket.orchestration.handle import HybridJob
from prefect_braket.orchestration.prefect_api import (
    on_flow_run_end,
    publish_markdown,
    publish_progress,
    publish_table,
    update_progress,
)
from prefect_braket.quantum.cost import PriceTable, UnknownPriceError

ITERATION_HYPERPARAMETERS = ("expected_iterations", "num_iterations", "max_iterations", "iterations",
                             "n_iterations", "num_tasks", "num_steps", "steps", "maxiter")
# A wait forwards the first `max_log_lines` of a job's log, many lines to a Prefect log record: with
# a record per line, a job that printed 20 MB in 0.5 s kept its waiting flow busy for 81 s, and a
# flow sent SIGINT went on for more than 20 s sending the records it had queued.
DEFAULT_MAX_LOG_LINES = 10_000
MAX_LOG_LINES_VARIABLE = "PREFECT_BRAKET_MAX_LOG_LINES"
LOG_RECORD_MAX_LINES = 200
LOG_RECORD_MAX_CHARS = 16_000  # under Prefect Cloud's cap on one log record (25,000 characters)
LOG_LINE_MAX_CHARS = 2_000  # a longer line is forwarded cut short, with a note; the job's log has it whole
METRICS_TABLE_MAX_ROWS = 1_000








def device_limit_name(device_arn: str) -> str:
    """The Prefect global concurrency limit that keeps one of your jobs at a time on a device."""
    return artifact_key("braket-device", device_arn.split("device/")[-1])


def ensure_device_limit(name: str) -> None:
    """Creates the device's limit (1 slot) unless it exists; concurrent creators are fine."""
    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            try:
                client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
            except ObjectAlreadyExists:
                pass


def wait_for_execution_window(device: Any, max_wait_seconds: float) -> None:
    """Holds a submission until the device's execution window opens, rather than paying for an
    idle job instance; raises if it opens later than `max_wait_seconds` from now."""
    opens = device.next_window_opens()
    now = datetime.now(timezone.utc)
    if opens is None or opens <= now:
        return
    wait = (opens - now).total_seconds()
    if wait > max_wait_seconds:
        raise TimeoutError(
            f"{device.device_arn} opens its next execution window at {opens.isoformat()}, {wait:.0f} s from now, "
            f"later than max_window_wait_seconds={max_wait_seconds:.0f}: submit closer to then or wait longer."
        )
    get_run_logger().info("Holding the submission until %s opens its execution window at %s", device.device_arn, opens)
    time.sleep(wait)


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


def _create(spec: JobSpec, backend: JobBackend | None, window_device: Any, max_window_wait_seconds: float) -> HybridJob:
    if window_device is not None:
        wait_for_execution_window(window_device, max_window_wait_seconds)
    backend = backend or backend_for(spec.device)
    if (run := current_flow_run_id()) is not None:
        spec = dataclasses.replace(spec, tags={**spec.tags, OWNER_TAG: run})
    arn = backend.create_job(spec, client_token=client_token())
    get_run_logger().info("Hybrid job %s submitted: %s (device %s)", spec.job_name, arn, spec.device)
    job = HybridJob(arn, backend)
    cancel_with_flow_run(job)
    return job


@task(name="submit-braket-job", cache_policy=NO_CACHE, retries=3, retry_delay_seconds=[1, 5, 20],
      retry_jitter_factor=0.5, retry_condition_fn=retry_if_transient)
def submit_job(
    spec: JobSpec, backend: JobBackend | None = None, wait_for_window: Any = None,
    max_window_wait_seconds: float = 86400.0,
) -> HybridJob:
    """Creates the job described by `spec`; a retry of this task returns the same job.

    Args:
        spec: The job to create.
        backend: Where to run it; by default chosen from the device ARN.
        wait_for_window: A `BraketDevice` whose execution window the submission waits for.
        max_window_wait_seconds: The longest that wait may be; a later window is an error.
    """
    return _create(spec, backend, wait_for_window, max_window_wait_seconds)


@task(name="run-braket-job-exclusively", cache_policy=NO_CACHE, retries=3, retry_delay_seconds=[1, 5, 20],
      retry_jitter_factor=0.5, retry_condition_fn=retry_if_transient)
def run_job_exclusively(
    spec: JobSpec, backend: JobBackend | None = None, wait_for_window: Any = None,
    max_window_wait_seconds: float = 86400.0, slot_timeout_seconds: float | None = None,
    poll_interval_seconds: float = 5.0,
) -> HybridJob:
    """Submits a job and waits for it while holding the device's global concurrency limit.

    The limit (`braket-device-<provider>-<name>`, one slot, created if missing) is shared by
    every flow on the same Prefect server, so at most one of your jobs runs on the QPU at a
    time; the next waits here, not in Braket's queue. Returns the ended job.
    """
    name = device_limit_name(spec.device)
    ensure_device_limit(name)
    get_run_logger().info("Waiting for a slot of concurrency limit %s", name)
    with concurrency(name, occupy=1, strict=True, timeout_seconds=slot_timeout_seconds):
        job = _create(spec, backend, wait_for_window, max_window_wait_seconds)
        wait_for_job.fn(job, poll_interval_seconds=poll_interval_seconds)
    return job


class JobWatcher:
    """One wait's worth of state: where the log was read up to, metrics so far, what was published.

    Each step does bounded work, one poll of the job or one chunk (`LOG_CHUNK_BYTES`) of a log
    backlog, so a timeout, a cancellation or SIGINT is acted on between chunks; a backlog is read
    chunk after chunk without pausing. Every line feeds the metrics. The first `max_log_lines` go to
    the run logger, many to a record (each record costs Prefect's API log handler about the same,
    whatever its size), and a wait that withheld lines ends with one line counting them and saying
    where to read them.
    """

    def __init__(
        self, job: HybridJob, expected_iterations: int | None, table_every_seconds: float,
        poll_interval_seconds: float, timeout_seconds: float | None, logger: Any = None,
        resubmit_on_instance_failure: int = 1, max_log_lines: int | None = None,
    ):
        self.job = job
        self.resubmit_on_instance_failure = resubmit_on_instance_failure
        # Artifacts belong to a run; outside one (a block used from a script) only logs are written.
        self.publish_artifacts = FlowRunContext.get() is not None or TaskRunContext.get() is not None
        self.poll_interval_seconds = poll_interval_seconds
        self.timeout_seconds = timeout_seconds
        self.deadline = None if timeout_seconds is None else time.monotonic() + timeout_seconds
        self.delay = min(0.05, poll_interval_seconds)
        self.final: dict[str, Any] | None = None
        self.logger = logger or get_run_logger()
        self.parser = MetricsParser()
        self.top_iteration: float | None = None
        self.meta: dict[str, Any] | None = None
        self.meta_read_at = 0.0
        self.cursor: Any = None
        self.backlog = False
        self.log_source: str | None = None
        self.max_log_lines = max_log_lines_setting(max_log_lines)
        self.lines_forwarded = 0
        self.lines_withheld = 0
        self.events_seen = 0
        self.last_status: str | None = None
        self.last_position: str | None = None
        self.expected_iterations = expected_iterations
        self.table_every_seconds = table_every_seconds
        self.table_published_at = 0.0
        self.table_rows_published = 0
        self.progress_id: Any = None
        self.progress_value = -1.0
        self.key = artifact_key(job.name)

    def step(self) -> float | None:
        """Does one bounded piece of the wait; returns how long to pause before the next (0 while a
        log backlog is read), or None once the job ended and its log was read to the end."""
        meta = self.poll()
        if meta["status"] in TERMINAL_STATES and not self.backlog:
            lost = self.job.arn
            if self.job.replace_if_lost(self.resubmit_on_instance_failure):
                self.logger.warning("Job %s lost its instance (%s); resubmitted from its checkpoints as %s",
                                    lost, meta.get("failureReason"), self.job.arn)
                # The new job's log and events start afresh; its metrics continue the same table.
                self.cursor, self.events_seen, self.last_status = None, 0, None
                self.delay = min(0.05, self.poll_interval_seconds)
                return 0.0
            self._close_log()
            self.summarize(meta)
            self.final = meta
            return None
        if self.deadline is not None and time.monotonic() >= self.deadline:
            self._close_log()
            raise TimeoutError(f"Job {self.job.arn} did not end within {self.timeout_seconds} s.")
        if self.backlog:
            return 0.0
        delay, self.delay = self.delay, min(self.delay * 1.5, self.poll_interval_seconds)
        return delay * random.uniform(0.8, 1.2)  # many waiting flows do not poll in step

    def poll(self) -> dict[str, Any]:
        """Reads what is new, one bounded chunk of the log included; returns the job's metadata.

        While a backlog is read the job is asked about at most every `poll_interval_seconds`. A job
        seen ended before a read had written its whole log, so the wait ends once the backlog is read.
        """
        if self.meta is None or not self.backlog or time.monotonic() - self.meta_read_at >= self.poll_interval_seconds:
            self.meta, self.meta_read_at = self.job.metadata(), time.monotonic()
            if self.expected_iterations is None:
                self.expected_iterations = _expected_iterations(self.meta)
        self._read_log()
        ended = self.meta["status"] in TERMINAL_STATES
        if not (ended and self.backlog):  # a job's end is logged after its last lines
            self._log_changes(self.meta)
        self._publish(self.meta["status"], ended and not self.backlog)
        return self.meta

    def _read_log(self) -> None:
        chunk = self.job.backend.read_log(self.job.arn, self.cursor)
        self.cursor, self.backlog = chunk.cursor, chunk.more
        self.log_source = chunk.source or self.log_source
        for line, stamp in zip(chunk.lines, itertools.chain(chunk.timestamps, itertools.repeat(None))):
            row = self.parser.feed(line, stamp)
            if row is not None and "iteration_number" in row:
                iteration = row["iteration_number"]
                self.top_iteration = iteration if self.top_iteration is None else max(self.top_iteration, iteration)
        room = max(self.max_log_lines - self.lines_forwarded, 0)
        self._forward(chunk.lines[:room])
        withheld = max(len(chunk.lines) - room, 0)
        if withheld and not self.lines_withheld:
            self.logger.info(
                "Job %s logged more than max_log_lines=%d lines: the rest are not forwarded (their metrics are "
                "still read); the wait ends with their count and where to read them.",
                self.job.name, self.max_log_lines,
            )
        self.lines_withheld += withheld

    def _forward(self, lines: list[str]) -> None:
        prefix = f"[{self.job.name}] "
        record: list[str] = []
        size = 0
        for line in lines:
            if len(line) > LOG_LINE_MAX_CHARS:
                cut = len(line) - LOG_LINE_MAX_CHARS
                line = f"{line[:LOG_LINE_MAX_CHARS]} … [{cut:,} more characters: the job's log has the whole line]"
            entry = prefix + line
            if record and (len(record) == LOG_RECORD_MAX_LINES or size + len(entry) > LOG_RECORD_MAX_CHARS):
                self.logger.info("%s", "\n".join(record))
                record, size = [], 0
            record.append(entry)
            size += len(entry) + 1
        if record:
            self.logger.info("%s", "\n".join(record))
        self.lines_forwarded += len(lines)

    def _close_log(self) -> None:
        if not self.lines_withheld:
            return
        where = f", or in {self.log_source}" if self.log_source else ""
        self.logger.info(
            "%s more lines of job %s's log were not forwarded (max_log_lines=%d; raise it on wait_for_job or with "
            "%s): read them with HybridJob.attach(%r).logs()%s.",
            f"{self.lines_withheld:,}", self.job.name, self.max_log_lines, MAX_LOG_LINES_VARIABLE, self.job.arn, where,
        )

    def _log_changes(self, meta: dict[str, Any]) -> None:
        for event in meta.get("events", [])[self.events_seen:]:
            message = f": {event['message']}" if event.get("message") else ""
            self.logger.info("Job %s event %s%s", meta["jobName"], event["eventType"], message)
        self.events_seen = len(meta.get("events", []))
        position = (meta.get("queueInfo") or {}).get("position")
        if meta["status"] == "QUEUED" and position not in (None, "None") and position != self.last_position:
            self.logger.info("Job %s is queued at position %s", meta["jobName"], position)
        self.last_position = position
        if meta["status"] != self.last_status:
            self.logger.info("Job %s is %s", meta["jobName"], meta["status"])
            self.last_status = meta["status"]

    def _progress(self, status: str) -> float:
        if status == "COMPLETED":
            return 100.0
        if self.expected_iterations and self.top_iteration is not None:
            return min(99.0, 100.0 * (self.top_iteration + 1) / self.expected_iterations)
        return 0.0

    def _publish(self, status: str, finished: bool) -> None:
        if not self.publish_artifacts:
            return
        progress = self._progress(status)
        if self.progress_id is None:
            self.progress_id = publish_progress(progress, f"{self.key}-progress", f"Progress of hybrid job {self.job.name}")
            self.progress_value = progress
        elif progress != self.progress_value:
            update_progress(self.progress_id, progress)
            self.progress_value = progress
        rows = len(self.parser.rows)
        due = time.monotonic() - self.table_published_at >= self.table_every_seconds
        if rows and rows != self.table_rows_published and (due or finished):
            table, description = self._table_artifact()
            publish_table(table, f"{self.key}-metrics", description)
            self.table_published_at = time.monotonic()
            self.table_rows_published = rows

    def metrics_table(self) -> dict[str, list]:
        pivot: MetricType = "timestamp" if self.top_iteration is None else "iteration_number"
        return self.parser.table(pivot)

    def _table_artifact(self) -> tuple[dict[str, list], str]:
        """The metrics table to publish and its description: a long run's table is sampled evenly
        (100,000 metric lines made a 5.2 MB artifact), keeping its first and last rows."""
        table = self.metrics_table()
        description = f"`log_metric` values of hybrid job {self.job.name} ({self.job.arn})"
        count = max((len(values) for values in table.values()), default=0)
        if count <= METRICS_TABLE_MAX_ROWS:
            return table, description
        spacing = (count - 1) / (METRICS_TABLE_MAX_ROWS - 1)
        picks = [round(i * spacing) for i in range(METRICS_TABLE_MAX_ROWS)]
        sampled = {name: [values[i] for i in picks] for name, values in table.items()}
        return sampled, (f"{description}: {METRICS_TABLE_MAX_ROWS:,} of its {count:,} rows, evenly spaced, the first "
                         "and last included; `get_job_metrics(job)` or `HybridJob.metrics()` has every row")

    def summarize(self, meta: dict[str, Any]) -> None:
        if not self.publish_artifacts:
            return
        started, ended = meta.get("startedAt"), meta.get("endedAt")
        duration = f"{(ended - started).total_seconds():.1f} s" if started and ended else "n/a"
        table = self.metrics_table()
        last = {name: values[-1] for name, values in table.items() if values and name not in ("timestamp",)}
        lines = [
            f"# Hybrid job `{meta['jobName']}`",
            "",
            "| field | value |",
            "|---|---|",
            f"| ARN | `{meta['jobArn']}` |",
            f"| device | `{meta['deviceConfig']['device']}` |",
            f"| status | **{meta['status']}** |",
            f"| run time | {duration} |",
            f"| metric lines | {len(self.parser.rows)} |",
        ]
        if self.lines_withheld:
            total = self.lines_forwarded + self.lines_withheld
            lines.append(f"| log lines forwarded | {self.lines_forwarded:,} of {total:,} (max_log_lines) |")
        try:
            cost = f"${PriceTable.default().job_instance_cost_of(meta):.4f} (instance time; tasks billed apart)"
        except UnknownPriceError as error:
            cost = f"unknown ({error})"
        lines.append(f"| estimated cost | {cost} |")
        if meta.get("failureReason"):
            lines.append(f"| failure reason | {meta['failureReason']} |")
        lines += [f"| last {name} | {value} |" for name, value in last.items()]
        publish_markdown("\n".join(lines), f"{self.key}-summary", f"Hybrid job {meta['jobName']}")


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


def max_log_lines_setting(max_log_lines: int | None = None) -> int:
    """How many log lines a wait forwards: `max_log_lines` if given, else `$PREFECT_BRAKET_MAX_LOG_LINES`,
    else 10,000. Forwarding is for watching a job; `HybridJob.logs()` has its whole log."""
    where = f"max_log_lines={max_log_lines!r}"
    if max_log_lines is None:
        raw = os.environ.get(MAX_LOG_LINES_VARIABLE, "").strip()
        if not raw:
            return DEFAULT_MAX_LOG_LINES
        where = f"{MAX_LOG_LINES_VARIABLE}={raw!r}"
        try:
            max_log_lines = int(raw)
        except ValueError:
            raise ValueError(f"{where} is not a whole number of lines: set it to one such as 10000, "
                             f"or unset it for the default ({DEFAULT_MAX_LOG_LINES}).") from None
    if max_log_lines < 0:
        raise ValueError(f"{where} is negative: use 0 to forward no log lines, or more to forward more.")
    return max_log_lines


def _expected_iterations(meta: dict[str, Any]) -> int | None:
    hyperparameters = meta.get("hyperParameters") or {}
    for name in ITERATION_HYPERPARAMETERS:
        try:
            return int(hyperparameters[name])
        except (KeyError, ValueError):
            continue
    return None


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
) -> dict[str, Any]:
    """Waits for a job to end, showing its log, events, queue position and metrics as it runs.

    Args:
        job: The job to wait for.
        poll_interval_seconds: The longest pause between polls (they start fast and slow down).
        timeout_seconds: Give up (and cancel the job) after this long.
        expected_iterations: The number of iterations the job logs metrics for, for the progress
            artifact; by default read from a hyperparameter such as `num_iterations` or `num_tasks`.
        table_every_seconds: How often the metrics table artifact is refreshed while the job runs.
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

    Returns:
        The final metadata of the job, or of the job that replaced it (its `jobArn`; a handle
        follows it with `job.follow_replacement(meta)`, which `HybridJob.result()` does). A job
        that fails is not an error here; `get_job_result` raises.
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
    return watcher.final


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
    return watcher.final


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
