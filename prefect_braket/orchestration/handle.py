"""`HybridJob`: the handle of one hybrid job, shaped like Braket's `AwsQuantumJob`.

A handle is only an ARN and a backend, so it pickles, travels between tasks and processes, and
re-attaches from anywhere: `HybridJob.attach(arn)`. Inside a Prefect flow, `result()` waits in a
task run that forwards the job's log and metrics to the Prefect UI; elsewhere it polls directly.

A job whose instance is lost (`backend.is_instance_failure`) is resubmitted from its checkpoints
while it is waited for, and the handle follows it: `arn` is then the replacement's, `replaced`
lists the jobs it replaced. Resubmission is idempotent: the replacement's client token derives
from the lost job's ARN, so a retried or restarted wait finds the same replacement.
"""

from __future__ import annotations

import errno
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect_braket.backends.base import (
    JobBackend,
    is_instance_failure,
    replacement_token,
)
from prefect_braket.backends.registry import backend_for
from prefect_braket.core.archive import read_member, safe_extract, vacant
from prefect_braket.core.errors import JobFailedError
from prefect_braket.core.home import package_home, private_directory
from prefect_braket.core.metrics import MetricsParser, MetricType, Statistic
from prefect_braket.core.polling import Backoff
from prefect_braket.core.states import TERMINAL_STATES
from prefect_braket.jobs.data_persistence import RESULTS_FILE, load_persisted_data
from prefect_braket.orchestration.context import in_flow_run
from prefect_braket.orchestration.waiting import get_job_result, wait_for_job


@dataclass(frozen=True)
class HybridJobQueueInfo:
    """Where a job stands in its device's job queue (`queue_position` None once it runs)."""

    queue_position: str | None
    message: str | None = None




class HybridJob:
    """A hybrid job on the embedded engine or on Amazon Braket.

    Example:
        ```python
        job = HybridJob.attach("local:job/6f1c...")   # from any process
        job.state()                                  # "RUNNING"
        job.result()                                 # waits, then {"final_theta": 0.5}
        job.metrics()                                # {"timestamp": [...], "theta": [...], ...}
        ```
    """

    TERMINAL_STATES = TERMINAL_STATES

    def __init__(self, arn: str, backend: JobBackend | None = None):
        self.arn = arn
        self.first_arn = arn
        self.replaced: list[str] = []
        self.backend = backend or backend_for(arn)
        self._metadata: dict[str, Any] | None = None

    @classmethod
    def attach(cls, arn: str, backend: JobBackend | None = None) -> "HybridJob":
        """Re-attaches to a job by its ARN; fails at once if no such job is known."""
        job = cls(arn, backend)
        job.metadata()
        return job

    def __repr__(self) -> str:
        return f"HybridJob(arn={self.arn!r})"

    # Handles are equal when they started from the same job: a handle that followed a replacement
    # is still the handle of that submission (`attach(replacement_arn)` is a different one).
    def __eq__(self, other: object) -> bool:
        return isinstance(other, HybridJob) and other.first_arn == self.first_arn

    def __hash__(self) -> int:
        return hash(self.first_arn)

    def __getstate__(self) -> dict[str, Any]:
        return {"arn": self.arn, "first_arn": self.first_arn, "replaced": list(self.replaced), "backend": self.backend,
                "_metadata": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Handles pickled before replacements existed (results persisted by Prefect) carry only `arn`.
        self.__dict__.update({"first_arn": state["arn"], "replaced": [], **state})

    # -- state -------------------------------------------------------------------------------

    def metadata(self, use_cached_value: bool = False) -> dict[str, Any]:
        """The job's GetJob description (status, events, timestamps, failureReason, ...)."""
        if not use_cached_value or self._metadata is None:
            self._metadata = self.backend.get_job(self.arn)
        return self._metadata

    @property
    def name(self) -> str:
        """The job's name."""
        return self.metadata(use_cached_value=True)["jobName"]

    def state(self, use_cached_value: bool = False) -> str:
        """QUEUED, RUNNING, COMPLETED, FAILED, CANCELLING or CANCELLED."""
        return self.metadata(use_cached_value)["status"]

    def queue_position(self) -> HybridJobQueueInfo:
        """The job's place in its device's queue while QUEUED."""
        info = self.metadata().get("queueInfo") or {}
        position = info.get("position")
        return HybridJobQueueInfo(None if position in (None, "None") else position, info.get("message"))

    def cancel(self) -> str:
        """Asks the job to stop; returns CANCELLING, or the status of a job that already ended."""
        return self.backend.cancel_job(self.arn)

    # -- logs and metrics ----------------------------------------------------------------------

    def log_lines(self) -> list[str]:
        """Every line the job has logged so far (read chunk by chunk until a read brings nothing new)."""
        return self._whole_log()[0]

    def _whole_log(self) -> tuple[list[str], str | None]:
        """The job's lines so far, and where its log is (a file, a CloudWatch stream), if the backend says."""
        lines: list[str] = []
        cursor, source = None, None
        while True:
            chunk = self.backend.read_log(self.arn, cursor)
            lines.extend(chunk.lines)
            source = chunk.source or source
            if not chunk.lines or chunk.cursor == cursor:
                return lines, source
            cursor = chunk.cursor

    def logs(self, wait: bool = False, poll_interval_seconds: float = 1.0) -> str:
        """The job's log; with `wait=True`, printed as it grows until the job ends."""
        if not wait:
            return "\n".join(self.log_lines())
        cursor, lines = None, []
        while True:
            finished = self.state() in TERMINAL_STATES
            more = True
            while more:  # a read returns a bounded chunk: what is there already is read without pausing
                chunk = self.backend.read_log(self.arn, cursor)
                cursor, more = chunk.cursor, chunk.more
                for line in chunk.lines:
                    print(line)
                lines.extend(chunk.lines)
            if finished:
                return "\n".join(lines)
            time.sleep(poll_interval_seconds)

    def metrics(self, metric_type: MetricType = "timestamp", statistic: Statistic = "max") -> dict[str, list]:
        """The job's `log_metric` values as columns, as Braket's `AwsQuantumJob.metrics()` returns them."""
        parser = MetricsParser()
        for line in self.log_lines():
            parser.feed(line)
        return parser.table(metric_type, statistic)

    # -- waiting and results -------------------------------------------------------------------

    def replace_if_lost(self, limit: int = 1) -> str | None:
        """Resubmits the job from its checkpoints if it failed because its instance was lost, and
        follows the new job; returns the new ARN, or None if the job did not end that way or its
        lineage already has `limit` replacements."""
        meta = self.metadata(use_cached_value=True)
        lost = meta["status"] == "FAILED" and is_instance_failure(meta.get("failureReason"))
        if len(self.replaced) >= limit or not lost:
            return None
        new = self.backend.resubmit_job(self.arn, replacement_token(self.arn))
        self.replaced.append(self.arn)
        self.arn, self._metadata = new, None
        return new

    def follow_replacement(self, meta: dict[str, Any]) -> None:
        """Points this handle at the job `meta` describes, if that job replaced this one: a wait
        that ran on a copy of the handle (another process, another task runner) followed it there."""
        if meta["jobArn"] != self.arn:
            self.replaced.append(self.arn)
            self.arn, self._metadata = meta["jobArn"], meta

    def wait_until_complete(
        self, timeout_seconds: float | None = None, poll_interval_seconds: float = 5.0,
        resubmit_on_instance_failure: int = 1,
    ) -> dict[str, Any]:
        """Polls until the job ends (quickly at first, then every `poll_interval_seconds`); returns its metadata.

        A job whose instance is lost is resubmitted from its checkpoints, up to
        `resubmit_on_instance_failure` times in its lineage, and the wait goes on with the new job.
        """
        deadline = None if timeout_seconds is None else time.monotonic() + timeout_seconds
        backoff = Backoff(poll_interval_seconds)
        while True:
            meta = self.metadata()
            if meta["status"] in TERMINAL_STATES:
                if self.replace_if_lost(resubmit_on_instance_failure):
                    backoff.reset()
                    continue
                return meta
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"{self.name}: polling for job completion timed out after {timeout_seconds} s.")
            time.sleep(backoff.next())

    def failure(self) -> JobFailedError:
        """The error describing why this job did not complete."""
        lines, source = self._whole_log()
        return JobFailedError.of(self.metadata(use_cached_value=True), lines, source)

    def result(
        self, poll_timeout_seconds: float = 864000, poll_interval_seconds: float = 5.0, allow_pickle: bool = False,
        resubmit_on_instance_failure: int = 1,
    ) -> dict[str, Any]:
        """Waits for the job, then returns its `results.json`; a job that did not complete raises.

        Inside a Prefect flow the wait and the retrieval are task runs, so the job's log lines and
        metrics show in the Prefect UI. A job whose instance is lost is resubmitted from its
        checkpoints (up to `resubmit_on_instance_failure` times) and the result is its replacement's.

        Raises:
            JobFailedError: the job ended FAILED or CANCELLED (with its failureReason and log tail).
            RuntimeError: the result is pickled and `allow_pickle` is False.
            UnsafeArchiveError: the job's `model.tar.gz` was refused (see `fetch_result`).
        """
        if in_flow_run():
            self.follow_replacement(wait_for_job(
                self, poll_interval_seconds=poll_interval_seconds, timeout_seconds=poll_timeout_seconds,
                resubmit_on_instance_failure=resubmit_on_instance_failure))
            return get_job_result(self, allow_pickle=allow_pickle)
        self.wait_until_complete(poll_timeout_seconds, poll_interval_seconds, resubmit_on_instance_failure)
        return self.fetch_result(allow_pickle)

    def fetch_result(self, allow_pickle: bool = False) -> dict[str, Any]:
        """The `results.json` of a job that has ended ({} if it saved none).

        Only that file is read from `model.tar.gz`, into memory: nothing is extracted. The archive
        is still checked whole, as `download_result` checks it, and one it would refuse is refused
        here. Its limits (`prefect_braket.core.archive`) are raised here by environment variables:
        `PREFECT_BRAKET_MAX_ARCHIVE_BYTES`, `PREFECT_BRAKET_MAX_ARCHIVE_MEMBERS`, and
        `PREFECT_BRAKET_MAX_RESULT_BYTES` for `results.json` itself (1 GiB).

        Raises:
            UnsafeArchiveError: the archive was refused (ArchiveTooLargeError: over a limit).
        """
        status = self.state()
        if status not in TERMINAL_STATES:
            raise RuntimeError(f"Job {self.arn} is {status}, not finished: wait for it first (result() waits).")
        if status != "COMPLETED":
            raise self.failure()
        with tempfile.TemporaryDirectory(prefix="prefect-braket-result-") as tmp:
            archive = self.backend.fetch_output_archive(self.arn, Path(tmp) / "model.tar.gz")
            try:
                data = read_member(archive, RESULTS_FILE)
            except FileNotFoundError:
                return {}
        return load_persisted_data(data.decode(), allow_pickle)

    def download_result(
        self, extract_to: str | Path | None = None, poll_timeout_seconds: float = 864000,
        poll_interval_seconds: float = 5.0, *, max_bytes: int | None = None, max_members: int | None = None,
    ) -> Path:
        """Waits for the job, then extracts its `model.tar.gz` into `{extract_to}/{job_name}/`; returns that.

        Every file the job wrote to its results directory (relative paths in a decorated
        function) is there, also for a job that failed; a link among them comes back as a copy of
        its file. `max_bytes` and `max_members` raise the archive's limits (`prefect_braket.core.archive`).

        `extract_to` defaults to `{home}/downloads`, home being `$PREFECT_BRAKET_HOME` or
        `~/.prefect_braket`. Braket's SDK extracts into the working directory; we do not, because
        what a job writes is its own choice of files, and among a project's files the next
        command could import or run them, or they could overwrite one.

        The archive is extracted into a new directory beside the target and renamed into place,
        so the target appears whole or not at all, and a download never merges into another.

        Example:
            ```python
            job.download_result()            # ~/.prefect_braket/downloads/train-1700000000000/
            job.download_result("results")   # results/train-1700000000000/
            ```

        Raises:
            FileExistsError: `{extract_to}/{job_name}` exists and is not empty (a same-named job
                was downloaded there before): pass another `extract_to`, or remove it.
            UnsafeArchiveError: the archive was refused; nothing is left behind.
        """
        self.wait_until_complete(poll_timeout_seconds, poll_interval_seconds)
        parent = Path(extract_to) if extract_to is not None else private_directory(package_home() / "downloads")
        target = parent / self.name
        occupied = FileExistsError(
            f"{target} already exists and is not empty: a download never merges into another (a job of the same "
            f"name may have been downloaded there). Pass another extract_to, or remove {target}."
        )
        if not vacant(target):
            raise occupied
        parent.mkdir(parents=True, exist_ok=True)
        # Beside the target, so that the rename stays on one file system and is atomic.
        with tempfile.TemporaryDirectory(prefix=f".{self.name}-", dir=parent) as tmp:
            archive = self.backend.fetch_output_archive(self.arn, Path(tmp) / "model.tar.gz")
            extracted = safe_extract(archive, Path(tmp) / "extracted", max_bytes=max_bytes, max_members=max_members)
            try:
                os.rename(extracted, target)  # replaces nothing but a missing or empty directory
            except OSError as error:
                if error.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR):
                    raise occupied from None  # another download got there first
                raise
        return target
