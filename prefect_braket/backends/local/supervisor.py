"""The supervisor: one detached process per job, which runs it and ends it, whatever way it goes.

The engine starts it as `python -m prefect_braket.backends.local.supervisor <job directory>`, in a
session of its own and with umask 077, so that it outlives whoever submitted the job and what it
and the job write is their owner's alone. It records its pid, waits for the job's QPU if it has
a ticket (`queue.wait_for_device`), chooses where the job's Braket calls go (`services`: the
`s3://` locations and endpoint its environment names), starts the job's process under Braket's
container contract (`container`), and watches it for a cancel and for the maximum runtime. When
the job ends,
nothing of it runs on (the supervisor is the subreaper of what the job orphans, and ends every
process carrying the job's marker), its results are packed into `model.tar.gz`, its files are
made private, and its record says how it ended unless that record is what broke.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

from prefect_braket.backends.local.processes import (
    INSTANCE_VARIABLE,
    SOURCE_VARIABLE,
    become_subreaper,
    end_processes,
    reap_children,
)
from prefect_braket.backends.local.queue import release, wait_for_device
from prefect_braket.backends.local.record import JobRecord, now
from prefect_braket.backends.local.services import BraketService, for_job
from prefect_braket.backends.local.store import JobStore, make_private
from prefect_braket.core.archive import pack_directory
from prefect_braket.core.polling import Backoff

CANCEL_GRACE_SECONDS = 2.0
LEFTOVER_GRACE_SECONDS = 0.2  # for what a job leaves running once its own process has ended
# The job's process is waited for in steps of at most this long, between which a cancel and the
# maximum runtime are checked: a long job's record is then read a few times a second, not 20.
WATCH_MAX_SECONDS = 0.25


class Ending(NamedTuple):
    """How a job ended: its status, why it failed, and the event that says so (`status` by default)."""

    status: str
    reason: str | None = None
    event: str | None = None


CANCELLED = Ending("CANCELLED")


class Supervisor:
    """Runs one job, detached from whoever submitted it, and ends it whatever way it goes."""

    def __init__(self, directory: Path):
        self.job = JobStore(directory)
        self.process: subprocess.Popen | None = None
        self.service: BraketService | None = None
        self.cancel_requested = False
        signal.signal(signal.SIGTERM, self._on_sigterm)

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        self.cancel_requested = True  # `LocalEngine.cancel_job`'s request

    def run(self) -> None:
        become_subreaper()
        record = None
        try:
            record = self.job.update(lambda r: setattr(r.engine, "supervisor_pid", os.getpid()))
            if record.ended:  # settled as lost before this process got going
                return
            ticket = record.engine.queue_ticket
            if ticket and not wait_for_device(self.job, ticket, lambda: self.cancel_requested):
                self._finish(CANCELLED)
                return
            self._run_job()
        except BaseException as error:  # nothing may leave a job unfinished on disk, nor running
            self._finish(Ending("FAILED", f"The engine failed to run the job: {type(error).__name__}: {error}"))
            raise
        finally:
            if record is not None:  # from memory: the device is free even if the record is damaged
                release(record)

    def _run_job(self) -> None:
        record = self.job.update(_started)
        self.service = for_job(self.job, record, self._note)
        process = self.process = self._start(record)
        self.job.update(lambda r: setattr(r.engine, "process_group", process.pid))
        stopped = self._watch(process, record.stopping_condition.maxRuntimeInSeconds)
        if stopped:
            self._finish(stopped)
        else:  # a container ends everything it started; so does a local job, in `_finish`
            self._finish(self._outcome(process.returncode), grace=LEFTOVER_GRACE_SECONDS)

    def _start(self, record: JobRecord) -> subprocess.Popen:
        """Starts the job's process, in a session of its own, its output appended to the job's log."""
        with open(self.job.log_file, "ab") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "prefect_braket.backends.local.container"],
                env=self._environment(record),
                cwd=self.job.instance,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def _environment(self, record: JobRecord) -> dict[str, str]:
        """This process's environment and Braket's container contract: the job's directories and
        token, where its Braket calls go (`services`), what the engine's caller set, the marker."""
        job = self.job
        env = dict(os.environ)
        env.update(
            PYTHONUNBUFFERED="1",
            AMZN_BRAKET_JOB_NAME=record.job_name,
            AMZN_BRAKET_DEVICE_ARN=record.device,
            AMZN_BRAKET_JOB_RESULTS_DIR=str(job.results_dir),
            AMZN_BRAKET_CHECKPOINT_DIR=str(job.checkpoints),
            AMZN_BRAKET_HP_FILE=str(job.hyperparameters_file),
            AMZN_BRAKET_SCRIPT_ENTRY_POINT=record.script.entry_point,
            AMZN_BRAKET_SCRIPT_COMPRESSION_TYPE=record.script.compression_type,
            AMZN_BRAKET_JOB_TOKEN=record.engine.job_token,
        )
        if record.input_channels:
            env["AMZN_BRAKET_INPUT_DIR"] = str(job.data_dir)
        if self.service is not None:
            env.update(self.service.environment)
            for name in self.service.removed:
                env.pop(name, None)
        env.update(record.engine.environment)
        env.update({INSTANCE_VARIABLE: str(job.instance), SOURCE_VARIABLE: record.script.s3_uri})
        return env

    def _note(self, line: str) -> None:
        """A line of the engine's own in the job's log, before the job's output."""
        with open(self.job.log_file, "a") as log:
            log.write(f"[prefect-braket] {line}\n")

    def _watch(self, process: subprocess.Popen, limit: int) -> Ending | None:
        """Waits for the job's `process` to end: None when it has, or how the job ended if it was
        cancelled or ran out of time first."""
        deadline = time.monotonic() + limit
        backoff = Backoff(max_seconds=WATCH_MAX_SECONDS)
        while True:
            self._reap()
            if self.service is not None:
                self.service.poll()
            if self.cancel_requested or self.job.read().status == "CANCELLING":
                return CANCELLED
            if time.monotonic() > deadline:
                return Ending("FAILED", f"The job exceeded its maximum runtime of {limit} seconds.",
                              "MAX_RUNTIME_EXCEEDED")
            try:
                process.wait(timeout=backoff.next())
                return None
            except subprocess.TimeoutExpired:
                continue

    def _outcome(self, code: int) -> Ending:
        """How a job whose process exited with `code` ended: the failure file names a failure of
        the job's own (`container`), else a non-zero code or a signal does."""
        failure_file = self.job.failure_file
        if code == 0 and not failure_file.exists():
            return Ending("COMPLETED")
        reason = failure_file.read_text().strip() if failure_file.exists() else ""
        return Ending("FAILED", (reason or _exit_reason(code))[:1024])

    def _reap(self) -> None:
        reap_children(self.process)

    def _finish(self, ending: Ending, grace: float = CANCEL_GRACE_SECONDS) -> None:
        """Ends the job: first every process of it (SIGTERM, SIGKILL after `grace`), so that nothing
        writes on while its results are packed, then its files made private, then its record."""
        job = self.job
        recorded = self.process.pid if self.process is not None else None
        end_processes(job.instance, grace, recorded=recorded, supervisor=os.getpid(), reap=self._reap)
        if self.service is not None:
            self.service.end()
        job.update(lambda r: r.add_event("UPLOADING_RESULTS"))
        try:
            pack_directory(job.results_dir, job.output_archive)
        except OSError as error:
            reason = (ending.reason + "; " if ending.reason else "") + f"packing results failed: {error}"
            ending = Ending("FAILED", reason)
        make_private(job.dir)

        def finish(record: JobRecord) -> None:
            record.end(*ending)
            record.bill_runtime()

        job.update(finish)


def _started(record: JobRecord) -> None:
    record.started_at = now()
    if record.status != "CANCELLING":  # a cancel asked for before the start stands
        record.status = "RUNNING"
    record.add_event("STARTING_INSTANCE", "Starting a local process.")
    record.add_event("RUNNING")


def _exit_reason(code: int) -> str:
    if code >= 0:
        return f"The job's process exited with code {code}."
    try:
        name = f" ({signal.Signals(-code).name})"
    except ValueError:
        name = ""
    return f"The job's process was killed by signal {-code}{name}."


if __name__ == "__main__":
    Supervisor(Path(sys.argv[1])).run()
