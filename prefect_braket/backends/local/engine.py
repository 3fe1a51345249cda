"""The embedded engine: hybrid jobs as detached local processes, with no AWS account and no Docker.

Each job runs under the contract of Braket's container (`container`): its source archive, entry
point, hyperparameters file, input channels, checkpoint directory and results directory, and
every `AMZN_BRAKET_*` variable including a job token. A supervisor process (`supervisor`), in a
session of its own, outlives whoever submitted the job: it queues the job behind others on the
same QPU (`queue`), enforces the maximum runtime, and packs the results directory into
`model.tar.gz`, whatever way the job ended. When the job ends (completed, failed, cancelled, out
of time) every process it started ends with it, however it detached (`processes`).

State lives on disk under `$PREFECT_BRAKET_HOME` (default `~/.prefect_braket`; `store` has the
home's layout), in a layout that mirrors Braket's S3 layout, so any process can re-attach to a
job by its ARN:

    jobs/{name}/{ts}/script/source.tar.gz
    jobs/{name}/{ts}/data/{channel}/...            input data
    jobs/{name}/{ts}/data/output/model.tar.gz      results
    jobs/{name}/{ts}/checkpoints/{name}.json
    jobs/{name}/{ts}/job.json                      GetJob-shaped metadata (`record.JobRecord`)
    jobs/{name}/{ts}/log.txt                       the job's live log
    jobs/{name}/{ts}/instance/                     the job's working area while it runs

The home holds job tokens, code and results, so it is its owner's alone: directories 0700, files
0600, including what the job writes (its supervisor's umask is 077, and what the job loosens is
tightened when it ends). A file that is not as the engine wrote it (a truncated job.json, an index
pointing elsewhere) raises `JobStateError` naming the file and the fix, when it is read; other
jobs are unaffected. A job the engine cannot take is refused before anything is created, and a
creation that fails removes what it made.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import suppress
from pathlib import Path
from typing import Any, Mapping

from prefect_braket.backends.base import (
    LOG_CHUNK_BYTES,
    REPLACES_TAG,
    LogChunk,
    replacement_name,
)
from prefect_braket.backends.local.processes import ENGINE_VARIABLES, end_processes, pid_alive
from prefect_braket.backends.local.queue import new_ticket, queue_info, release
from prefect_braket.backends.local.record import JobRecord
from prefect_braket.backends.local.staging import new_record, stage
from prefect_braket.backends.local.store import (
    ARN_PREFIX,
    JOB_ID,
    ORPHAN_GRACE_SECONDS,
    JobStore,
    claimed_arn,
    find_job,
    index_file,
    private_dir,
)
from prefect_braket.core.arns import is_s3_uri
from prefect_braket.core.errors import JobNotFoundError
from prefect_braket.core.home import HOME_VARIABLE, package_home
from prefect_braket.core.requirements import check_requirements
from prefect_braket.core.spec import JobSpec
from prefect_braket.jobs.data_persistence import checkpoint_name_for, write_atomically

# The supervisors this process started, polled now and then so that they do not stay zombies.
_spawned: list[subprocess.Popen] = []


class LocalEngine:
    """Runs hybrid jobs as local processes; implements `prefect_braket.backends.base.JobBackend`.

    Example:
        ```python
        engine = LocalEngine()                  # jobs under $PREFECT_BRAKET_HOME
        arn = engine.create_job(spec)           # returns at once; the job runs detached
        engine.get_job(arn)["status"]           # "QUEUED", "RUNNING", "COMPLETED", ...
        ```
    """

    name = "local"
    bills_instances = False  # a job's "instance" is a process on this machine

    def __init__(self, root: Path | str | None = None):
        self.root = Path(root) if root else package_home()

    def __repr__(self) -> str:
        return f"LocalEngine(root={str(self.root)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LocalEngine) and other.root == self.root

    def __hash__(self) -> int:
        return hash(self.root)

    def store(self, job_arn: str) -> JobStore:
        """The directory of the job with this ARN; JobNotFoundError, saying where else it may be, if
        this home has never had it."""
        try:
            return find_job(self.root, job_arn)
        except JobNotFoundError:
            # The other cases (not an engine ARN, an index whose job directory was removed) say
            # what is wrong already; a job this home never had may be on another machine.
            well_formed = job_arn.startswith(ARN_PREFIX) and JOB_ID.fullmatch(job_arn[len(ARN_PREFIX):])
            if well_formed and not index_file(self.root, job_arn).exists():
                raise JobNotFoundError(_not_in_this_home(job_arn, self.root)) from None
            raise

    # -- JobBackend: creating ----------------------------------------------------------------------

    def check_dependencies(self, requirements: list[str]) -> None:
        """Jobs run in this Python environment: raises ModuleNotFoundError naming what it lacks."""
        check_requirements(requirements)

    def create_job(
        self, spec: JobSpec, client_token: str | None = None, initial_checkpoints: Path | None = None,
        environment: Mapping[str, str] | None = None,
    ) -> str:
        """Creates and starts a job; `initial_checkpoints` (a directory) are in its checkpoint
        directory before it starts, as `copy_checkpoints_from_job`'s are.

        `environment` sets variables of the job's process over the engine's own (`supervisor`):
        the local endpoint gives the jobs of its CreateJob the `s3://` locations Braket's
        container has (`core.layout.container_s3_variables`), and the job's Braket calls then go
        where those say (`services`). The variables that find and start the job's process
        (`processes.ENGINE_VARIABLES`) are not the caller's to set. The values are kept in the
        job's record (its owner's alone, as the job token is): pass no secrets."""
        _reap()
        earlier = self._refuse_what_cannot_run(spec)
        given = _checked_environment(environment or {})
        job_id = uuid.uuid4().hex
        if not client_token:
            return self._create(spec, job_id, earlier, initial_checkpoints, given)
        claim = private_dir(self.root, self.root / "tokens") / hashlib.sha256(client_token.encode()).hexdigest()
        while True:
            try:
                write_atomically(claim, ARN_PREFIX + job_id, exclusive=True)  # names the job before it exists
                break
            except FileExistsError:
                existing = claimed_arn(self.root, claim)
                if existing:
                    return existing
        try:
            return self._create(spec, job_id, earlier, initial_checkpoints, given)
        except BaseException:
            claim.unlink(missing_ok=True)
            raise

    def _refuse_what_cannot_run(self, spec: JobSpec) -> JobStore | None:
        """Raises for a job this engine cannot take, before anything of it is created; returns the
        job whose checkpoints it starts from, if any. Its files are checked again, as JobSpec
        checked them: they may have gone since."""
        for channel, location in spec.input_data.items():
            if is_s3_uri(location):
                raise ValueError(
                    f"Input channel {channel!r} is in S3 ({location}); the embedded engine takes local paths."
                )
        spec._check_input_data()
        spec._check_source()
        if not spec.copy_checkpoints_from_job:
            return None
        try:
            return self.store(spec.copy_checkpoints_from_job)
        except JobNotFoundError as error:
            raise JobNotFoundError(f"copy_checkpoints_from_job: {error}") from None

    def _create(self, spec: JobSpec, job_id: str, earlier: JobStore | None, initial_checkpoints: Path | None,
                environment: dict[str, str]) -> str:
        """Makes the job whole, or not at all: its directory and files, its record, its ticket (for
        a QPU), its index, and its supervisor, in that order; a failure removes what was made."""
        arn = ARN_PREFIX + job_id
        job = JobStore(self._new_job_directory(spec.job_name))
        index = index_file(self.root, arn)
        ticket = new_ticket(self.root, spec.device, job_id)
        try:
            stage(spec, job, earlier, initial_checkpoints)
            job.write(new_record(spec, job, arn, ticket, environment))
            relative = str(job.dir.relative_to(self.root))
            if ticket is not None:  # after job.json: whoever reads the ticket finds the job
                write_atomically(private_dir(self.root, ticket.parent) / ticket.name, relative)
            write_atomically(private_dir(self.root, index.parent) / index.name, relative)
            process = _start_supervisor(job)
        except BaseException:
            for made in (index, ticket):
                if made is not None:
                    with suppress(OSError):  # not made, or where it could not be (what failed)
                        made.unlink()
            shutil.rmtree(job.dir, ignore_errors=True)
            raise
        _spawned.append(process)
        return arn

    def _new_job_directory(self, job_name: str) -> Path:
        """`jobs/{name}/{milliseconds}`, made for this job alone (the next millisecond if taken)."""
        names = private_dir(self.root, self.root / "jobs" / job_name)
        stamp = int(time.time() * 1000)
        while True:
            directory = names / str(stamp)
            try:
                directory.mkdir(mode=0o700)
                return directory
            except FileExistsError:
                stamp += 1

    def resubmit_job(self, job_arn: str, client_token: str) -> str:
        job = self.store(job_arn)
        record = job.read()
        name = replacement_name(record.job_name)
        with tempfile.TemporaryDirectory(prefix="prefect-braket-checkpoints-") as tmp:
            _copy_renamed_checkpoints(job.checkpoints, Path(tmp), record.job_name, name)
            spec = JobSpec(
                job_name=name, device=record.device, source_module=job.source_archive,
                entry_point=record.script.entry_point, hyperparameters=record.hyperparameters,
                input_data=record.input_channels, instance_config=record.instance_config,
                stopping_condition=record.stopping_condition,
                role_arn=record.role_arn or None, tags={**record.tags, REPLACES_TAG: job_arn},
                reservation_arn=record.reservation_arn,
            )
            return self.create_job(spec, client_token=client_token, initial_checkpoints=Path(tmp))

    # -- JobBackend: reading and cancelling --------------------------------------------------------

    def get_job(self, job_arn: str) -> dict[str, Any]:
        _reap()
        job = self.store(job_arn)
        record = job.read()
        if not record.ended and not pid_alive(record.engine.supervisor_pid, str(job.dir)):
            record = self._settle_orphan(job)
        return {**record.get_job(), "queueInfo": queue_info(record)}

    def _settle_orphan(self, job: JobStore) -> JobRecord:
        """Ends the record of a job whose supervisor is gone (killed, or the machine restarted), and
        whatever of the job still runs."""
        # A supervisor without a pid on record may be starting (a loaded machine can take
        # seconds): give it time. One that recorded its pid ends the job's record before it exits.
        deadline = time.monotonic() + ORPHAN_GRACE_SECONDS
        while True:
            record = job.read()
            pid = record.engine.supervisor_pid
            if record.ended or pid_alive(pid, str(job.dir)):
                return record
            if pid is not None or time.monotonic() > deadline:
                break
            time.sleep(0.05)

        def settle(record: JobRecord) -> None:
            if record.ended:
                return
            end_processes(job.instance, grace=0.5, recorded=record.engine.process_group)
            if record.status == "CANCELLING":
                record.end("CANCELLED")
            else:
                record.end_as_lost("the engine process supervising it ended unexpectedly (killed, or the "
                                   "machine restarted)")
            release(record)

        return job.update(settle)

    def cancel_job(self, job_arn: str) -> str:
        job = self.store(job_arn)

        def request(record: JobRecord) -> None:
            if not record.ended:
                record.status = "CANCELLING"

        record = job.update(request)
        if record.ended:
            return record.status
        pid = record.engine.supervisor_pid
        if pid is not None and pid_alive(pid, str(job.dir)):
            try:
                os.kill(pid, signal.SIGTERM)
                return "CANCELLING"
            except ProcessLookupError:
                pass  # it ended just now; its record says how
        return self.get_job(job_arn)["status"]

    def read_log(self, job_arn: str, cursor: Any = None) -> LogChunk:
        """Whole lines of `log.txt` from byte `cursor` on, at most `LOG_CHUNK_BYTES` of them; a
        line still being written is left for the next read."""
        job = self.store(job_arn)
        offset = int(cursor or 0)
        with open(job.log_file, "rb") as f:
            f.seek(offset)
            data = f.read(LOG_CHUNK_BYTES)
        full = len(data) == LOG_CHUNK_BYTES
        end = data.rfind(b"\n") + 1
        if end == 0 and full:  # a line longer than a chunk comes in chunk-sized pieces, not never
            end = len(data)
        lines = data[:end].decode(errors="replace").splitlines()
        return LogChunk(lines=lines, cursor=offset + end, more=full, source=str(job.log_file))

    def fetch_output_archive(self, job_arn: str, destination_file: Path) -> Path:
        job = self.store(job_arn)
        if not job.output_archive.exists():
            status = job.read().status
            raise FileNotFoundError(f"Job {job_arn} has no model.tar.gz yet (status {status}): {job.output_archive}.")
        shutil.copyfile(job.output_archive, destination_file)
        return Path(destination_file)

    # -- for diagnostics and tests ---------------------------------------------------------------

    def kill_instance(self, job_arn: str) -> None:
        """Ends a job as a lost machine would: its processes killed at once, the job FAILED with an
        instance-failure reason (`backend.is_instance_failure`), its checkpoints kept."""
        job = self.store(job_arn)
        supervisor = job.read().engine.supervisor_pid
        if supervisor is not None and pid_alive(supervisor, str(job.dir)):
            os.kill(supervisor, signal.SIGKILL)
        # The supervisor records the job's process only after starting it, so it is found by its
        # environment. A lost machine gives its processes no SIGTERM to act on.
        end_processes(job.instance, grace=0, recorded=job.read().engine.process_group)

        def lost(record: JobRecord) -> None:
            if not record.ended:
                record.end_as_lost("its instance stopped")
                release(record)

        job.update(lost)

    def process_ids(self, job_arn: str) -> dict[str, int | None]:
        """The supervisor's pid and the job's process group (its process ids' group)."""
        engine = self.store(job_arn).read().engine
        return {"supervisor": engine.supervisor_pid, "process_group": engine.process_group}

    def job_token(self, job_arn: str) -> str:
        """The token the job's tasks carry to get its device's priority."""
        return self.store(job_arn).read().engine.job_token

    def job_directory(self, job_arn: str) -> Path:
        """Where the job's files are (the Braket S3 layout, on disk)."""
        return self.store(job_arn).dir

    def checkpoint_directory(self, job_arn: str) -> Path:
        """Where the job writes its checkpoints, as they are written (for a bridge that syncs them)."""
        return self.store(job_arn).checkpoints

    def output_archive(self, job_arn: str) -> Path:
        """Where the job's `model.tar.gz` is once it has ended (it may not exist)."""
        return self.store(job_arn).output_archive


def _not_in_this_home(job_arn: str, root: Path) -> str:
    """Why a well-formed embedded-engine ARN is unknown here, and what to do. The usual cause is a
    handle that travelled (a flow run on another worker, a pickled result): the job is on disk
    where it was created, and the ARN, `local:job/<random id>`, does not say where that was."""
    return (
        f"No job {job_arn} under {root}, the embedded engine's home here (host {socket.gethostname()}). "
        f"Embedded-engine jobs are visible only on the machine that ran them, under the {HOME_VARIABLE} "
        "they were created with, and their ARN does not name that machine or home (if a flow run submitted "
        f"it, that run's log has 'Hybrid job ... submitted: {job_arn}', and which worker ran it). Attach from "
        f"that machine with the same {HOME_VARIABLE}; for jobs that several machines share, run them on the local "
        "endpoint (prefect-braket-endpoint, with an AWS device ARN and AWS_ENDPOINT_URL) or on Amazon Braket."
    )


def _start_supervisor(job: JobStore) -> subprocess.Popen:
    """Starts the job's supervisor (`supervisor`), detached: a session of its own, its output in
    `supervisor.log`, and umask 077, which the job inherits: what they write is the owner's alone."""
    log = os.open(job.supervisor_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "prefect_braket.backends.local.supervisor", str(job.dir)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            umask=0o077,
        )
    finally:
        os.close(log)


def _checked_environment(environment: Mapping[str, str]) -> dict[str, str]:
    """The variables a caller sets for a job's process, refused before anything is created if
    they are not text, or are the engine's own."""
    for name, value in environment.items():
        if not (isinstance(name, str) and isinstance(value, str)):
            raise TypeError(f"environment {name!r}={value!r:.60}: a job's environment variables are strings.")
        if name in ENGINE_VARIABLES:
            raise ValueError(f"environment {name!r}: the embedded engine sets it itself, to find and start "
                             "the job's process; leave it out.")
    return dict(environment)


def _copy_renamed_checkpoints(source: Path, target: Path, old_name: str, new_name: str) -> None:
    """Copies a job's checkpoints (hidden files left out), each renamed for the job `new_name`, so
    that its `load_job_checkpoint()` finds them (`checkpoint_name_for`)."""
    for path in (p for p in source.rglob("*") if p.is_file() and not p.name.startswith(".")):
        relative = path.relative_to(source)
        destination = target / relative.parent / checkpoint_name_for(path.name, old_name, new_name)
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, destination)


def _reap() -> None:
    _spawned[:] = [p for p in _spawned if p.poll() is None]
