"""What a waiting flow shows of a hybrid job: its log, events, queue position and metrics.

`JobWatcher` holds one wait's state. Each `step` does bounded work, one poll of the job or one
chunk of a log backlog, so a timeout, a cancellation or SIGINT is acted on between chunks. Every
log line feeds the metrics; the first `max_log_lines` go to the run logger, many to a record,
and a wait that withheld lines ends with one line counting them and saying where to read them.
The job's progress (its description saying where the job stands, and at the end how it ended),
metrics table (sampled past 1,000 rows) and summary are artifacts of the run. Artifacts show values
for reading: timestamps in ISO-8601 UTC, floats to 10 significant digits, iteration numbers whole;
`HybridJob.metrics()` has them as logged. A job that did not complete ends the wait with its
`JobFailedError`, one line whatever the job printed (`ended`).
"""

from __future__ import annotations

import itertools
import os
import time
from collections import deque
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from prefect.context import FlowRunContext, TaskRunContext
from prefect.logging import get_run_logger

from prefect_braket.core.errors import LOG_TAIL_LINES, JobFailedError, job_ended
from prefect_braket.core.metrics import MetricsParser, MetricType
from prefect_braket.core.polling import Backoff
from prefect_braket.core.spec import shown_hyperparameters
from prefect_braket.core.states import TERMINAL_STATES
from prefect_braket.orchestration.context import artifact_key
from prefect_braket.orchestration.prefect_api import (
    publish_markdown,
    publish_progress,
    publish_table,
    update_progress,
    update_table,
)
from prefect_braket.quantum.cost import PriceTable, UnknownPriceError

if TYPE_CHECKING:
    from prefect_braket.orchestration.handle import HybridJob

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


SHOWN_HYPERPARAMETER_MAX_CHARS = 200  # of a value in the summary; Braket allows 2,500


def shown_metric(name: str, value: Any) -> Any:
    """A metric's value as an artifact shows it: a `timestamp` in ISO-8601 UTC to the second, an
    `iteration_number` whole, another float to 10 significant digits (`0.30000000000000004` is 0.3)."""
    if not isinstance(value, float) or value != value or value in (float("inf"), float("-inf")):
        return value
    if name == "timestamp":
        return datetime.fromtimestamp(value, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    if name == "iteration_number" and value.is_integer():
        return int(value)
    return float(f"{value:.10g}")


def _cell(text: str) -> str:
    """Text for a markdown table's cell: one line, no column breaks, at most a screenful."""
    text = " ".join(str(text).split()).replace("|", "\\|")
    cut = len(text) - SHOWN_HYPERPARAMETER_MAX_CHARS
    return text if cut <= 0 else f"{text[:SHOWN_HYPERPARAMETER_MAX_CHARS]} … [{cut:,} more characters]"


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
        self.backoff = Backoff(poll_interval_seconds)
        self.final: dict[str, Any] | None = None
        self.logger = logger or get_run_logger()
        self.parser = MetricsParser()
        self.tail: deque[str] = deque(maxlen=LOG_TAIL_LINES)
        self.failure: JobFailedError | None = None
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
        self.positions: list[str] = []  # the queue positions seen, each change once
        self.expected_iterations = expected_iterations
        self.table_every_seconds = table_every_seconds
        self.table_published_at = 0.0
        self.table_rows_published = 0
        self.table_id: Any = None
        self.progress_id: Any = None
        self.progress_value = -1.0
        self.progress_description: str | None = None
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
                self.tail.clear()
                self.backoff.reset()
                return 0.0
            self._close_log()
            self.summarize(meta)
            self.final = meta
            if meta["status"] != "COMPLETED":
                self.failure = JobFailedError.of(meta, list(self.tail), self.log_source)
            return None
        if self.deadline is not None and time.monotonic() >= self.deadline:
            self._close_log()
            raise TimeoutError(f"Job {self.job.arn} did not end within {self.timeout_seconds} s.")
        if self.backlog:
            return 0.0
        return self.backoff.next()

    def ended(self, raise_on_failure: bool = True) -> dict[str, Any]:
        """The metadata of the job the wait saw end. A job that did not complete raises its
        `JobFailedError` (so the wait's task run ends Failed); with `raise_on_failure=False` the error
        is logged instead, once, at ERROR, and its metadata returned.

        Example:
            ```python
            while (delay := watcher.step()) is not None:
                time.sleep(delay)
            meta = watcher.ended()
            ```
        """
        if self.failure is not None:
            if raise_on_failure:
                raise self.failure
            self.logger.error("%s", self.failure)
        return self.final

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
        self._publish(self.meta, ended and not self.backlog)
        return self.meta

    def _read_log(self) -> None:
        chunk = self.job.backend.read_log(self.job.arn, self.cursor)
        self.cursor, self.backlog = chunk.cursor, chunk.more
        self.log_source = chunk.source or self.log_source
        self.tail.extend(chunk.lines)
        for line, stamp in zip(chunk.lines, itertools.chain(chunk.timestamps, itertools.repeat(None)), strict=False):
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
            self.positions.append(position)
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

    def _progress_description(self, meta: dict[str, Any]) -> str:
        """Where the job stands (its queue position while queued), or how it ended, with its reason."""
        if meta["status"] in TERMINAL_STATES:
            return job_ended(meta)
        position = self.positions[-1] if meta["status"] == "QUEUED" and self.positions else None
        return f"Job {meta['jobName']} is {meta['status']}" + (f" at queue position {position}" if position else "")

    def _publish(self, meta: dict[str, Any], finished: bool) -> None:
        if not self.publish_artifacts:
            return
        # A job that failed keeps the percent it reached: only a completed job is at 100%.
        progress, description = self._progress(meta["status"]), self._progress_description(meta)
        if self.progress_id is None:
            self.progress_id = publish_progress(progress, f"{self.key}-progress", description)
        elif (progress, description) != (self.progress_value, self.progress_description):
            update_progress(self.progress_id, progress, description)
        self.progress_value, self.progress_description = progress, description
        rows = len(self.parser.rows)
        due = time.monotonic() - self.table_published_at >= self.table_every_seconds
        if rows and rows != self.table_rows_published and (due or finished):
            table, description = self._table_artifact()
            # Refreshed in place: a new version each time would be a card each in the run's Artifacts tab.
            if self.table_id is None:
                self.table_id = publish_table(table, f"{self.key}-metrics", description)
            else:
                update_table(self.table_id, table, description)
            self.table_published_at = time.monotonic()
            self.table_rows_published = rows

    def metrics_table(self) -> dict[str, list]:
        pivot: MetricType = "timestamp" if self.top_iteration is None else "iteration_number"
        return self.parser.table(pivot)

    def _table_artifact(self) -> tuple[dict[str, list], str]:
        """The metrics table to publish and its description: a long run's table is sampled evenly
        (100,000 metric lines made a 5.2 MB artifact), keeping its first and last rows."""
        table = {name: [shown_metric(name, value) for value in values] for name, values in self.metrics_table().items()}
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
        last = {name: shown_metric(name, values[-1]) for name, values in table.items()
                if values and name not in ("timestamp",)}
        lines = [
            f"# Hybrid job `{meta['jobName']}`",
            "",
            "| field | value |",
            "|---|---|",
            f"| ARN | `{meta['jobArn']}` |",
            f"| device | `{meta['deviceConfig']['device']}` |",
            f"| status | **{meta['status']}** |",
            f"| run time | {duration} |",
            f"| queue position | {self._queue_summary(meta)} |",
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
        hyperparameters = shown_hyperparameters(meta.get("hyperParameters") or {})
        if hyperparameters:
            lines += ["", "## Hyperparameters", "", "| name | value |", "|---|---|"]
            lines += [f"| `{_cell(name)}` | {_cell(value)} |" for name, value in sorted(hyperparameters.items())]
        publish_markdown("\n".join(lines), f"{self.key}-summary", f"Hybrid job {meta['jobName']}")

    def _queue_summary(self, meta: dict[str, Any]) -> str:
        """The queue positions the wait saw (`3 → 2 → 1`) and how long the job queued before it started."""
        created, started = meta.get("createdAt"), meta.get("startedAt")
        waited = f"queued {(started - created).total_seconds():.1f} s" if created and started else "never started"
        seen = " → ".join(self.positions) if self.positions else "none reported"
        return f"{seen} ({waited})"
