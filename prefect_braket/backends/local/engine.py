"""The embedded engine: hybrid jobs as detached local processes, with no AWS account and no Docker.

Each job runs under the contract of Braket's container (`prefect_braket.container`): its source
archive, entry point, hyperparameters file, input channels, checkpoint directory and results
directory, and every `AMZN_BRAKET_*` variable including a job token. A supervisor process, in a
session of its own, outlives whoever submitted the job: it queues the job behind others on the
same QPU, enforces the maximum runtime, and packs the results directory into `model.tar.gz`,
whatever way the job ended. When the job ends (completed, failed, cancelled, out of time) every
process it started ends with it, however it detached: the supervisor is their subreaper, and each
carries the job's marker in its environment (`_job_processes`).

State lives on disk under `$PREFECT_BRAKET_HOME` (default `~/.prefect_braket`), in a layout that
mirrors Braket's S3 layout, so any process can re-attach to a job by its ARN:

    jobs/{name}/{ts}/script/source.tar.gz
    jobs/{name}/{ts}/data/{channel}/...            input data
    jobs/{name}/{ts}/data/output/model.tar.gz      results
    jobs/{name}/{ts}/checkpoints/{name}.json
    jobs/{name}/{ts}/job.json                      GetJob-shaped metadata
    jobs/{name}/{ts}/log.txt                       the job's live log
    jobs/{name}/{ts}/instance/                     the job's working area while it runs

The home holds job tokens, code and results, so it is its owner's alone: directories 0700, files
0600, including what the job writes (its supervisor's umask is 077, and what the job loosens is
tightened when it ends). A file that is not as the engine wrote it (a truncated job.json, an index
pointing elsewhere) raises `JobStateError` naming the file and the fix, when it is read
(`JobStore.read`, `_referenced_job`); other jobs are unaffected. A job the engine cannot take is
refused before anything is created, and a creation that fails removes what it made.
"""

from __future__ import annotations

import ctypes
import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager, suppress
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

from prefect_braket.backends.base import (
    INSTANCE_FAILURE_PREFIX,
    LOG_CHUNK_BYTES,
    REPLACES_TAG,
    LogChunk,
    replacement_name,
)
from prefect_braket.core.archive import pack_directory, pack_source
from prefect_braket.core.arns import is_qpu
from prefect_braket.core.errors import (
    JobNotFoundError,
    JobStateError,
    SubmissionInProgress,
)
from prefect_braket.core.home import HOME_VARIABLE, package_home, private_directory
from prefect_braket.core.spec import InstanceConfig, JobSpec, StoppingCondition
from prefect_braket.core.states import JOB_STATES, TERMINAL_STATES
from prefect_braket.jobs.data_persistence import checkpoint_name_for
from prefect_braket.jobs.environment import FAILURE_FILE

ARN_PREFIX = "local:job/"
INSTANCE_VARIABLE = "PREFECT_BRAKET_INSTANCE_DIR"  # in a job's environment: its instance directory
CANCEL_GRACE_SECONDS = 2.0
LEFTOVER_GRACE_SECONDS = 0.2  # for what a job leaves running once its own process has ended
KILL_TIMEOUT_SECONDS = 10.0  # a process stuck in the kernel outlives SIGKILL; the job ends regardless
ORPHAN_GRACE_SECONDS = 10.0
QUEUE_POLL_SECONDS = 0.05
PR_SET_CHILD_SUBREAPER = 36  # linux/prctl.h

# The names the engine gives things, which is all it accepts back from disk.
JOB_ID = re.compile(r"[0-9a-f]{32}")
JOB_DIRECTORY = re.compile(r"jobs/[A-Za-z0-9-]{1,50}/\d+")  # relative to the home
TICKET_NAME = re.compile(r"\d{20}-[0-9a-f]{32}")  # submission time, job id

_spawned: list[subprocess.Popen] = []


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9-]+", "-", text).strip("-")


def _pid_alive(pid: int | None, marker: str) -> bool:
    """Whether `pid` is a live (not zombie) process whose command line names `marker`."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    proc = Path(f"/proc/{pid}")
    if not proc.exists():
        return True
    try:
        if proc.joinpath("stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False
        return marker in proc.joinpath("cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False


def _job_processes(instance: Path, recorded: int | None = None, supervisor: int | None = None) -> set[int]:
    """The live processes of the job with this instance directory, from one scan of /proc: those
    whose environment carries the job's marker, and every descendant of its `supervisor`.

    A process can leave its group and its session and double-fork away from its parent, but it
    keeps its environment; one that also execs with another environment is still a descendant of
    the supervisor, the subreaper of whatever the job orphans (once the supervisor is gone, only
    the marker finds it). A recorded number alone may be stale: after a restart it can belong to
    somebody else's processes. Zombies are left out: they have ended, and are gone once reaped.
    Without /proc, the recorded process group, as the negative number `os.kill` takes for one.
    """
    if not Path("/proc").exists():
        if recorded is None:
            return set()
        try:
            os.kill(-recorded, 0)
            return {-recorded}
        except OSError:
            return set()
    marker = f"\0{INSTANCE_VARIABLE}={instance}\0".encode()
    parents: dict[int, int] = {}
    found = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            state, ppid = proc.joinpath("stat").read_text().rsplit(")", 1)[1].split()[:2]
            if state in ("Z", "X"):
                continue
            parents[int(proc.name)] = int(ppid)
            if marker in b"\0" + proc.joinpath("environ").read_bytes() + b"\0":
                found.add(int(proc.name))
        except (OSError, ValueError):
            continue
    if supervisor is not None:
        for pid in parents:
            ancestor = parents[pid]
            for _ in range(len(parents)):  # bounded: pids reused during the scan could make a loop
                if ancestor == supervisor or ancestor not in parents:
                    break
                ancestor = parents[ancestor]
            if ancestor == supervisor:
                found.add(pid)
    found.discard(os.getpid())
    return found


def _signal(pids: set[int], signum: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, signum)
        except (ProcessLookupError, PermissionError):
            pass


def _end_processes(
    instance: Path, grace: float, recorded: int | None = None, supervisor: int | None = None,
    reap: Callable[[], None] = lambda: None,
) -> None:
    """Ends every process of a job (`_job_processes`): SIGTERM, then SIGKILL for what is left after
    `grace` (at once when it is 0), again until nothing is left, since a job can start processes
    while it is being ended. `reap` collects the caller's ended children, which would otherwise
    stay zombies. SIGKILLs stop after `KILL_TIMEOUT_SECONDS`, for a process stuck in the kernel."""

    def remaining() -> set[int]:
        reap()
        return _job_processes(instance, recorded, supervisor)

    targets = remaining()
    if targets and grace > 0:
        _signal(targets, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while targets and time.monotonic() < deadline:
            time.sleep(0.02)
            targets = remaining()
    deadline = time.monotonic() + KILL_TIMEOUT_SECONDS
    while targets and time.monotonic() < deadline:
        _signal(targets, signal.SIGKILL)
        time.sleep(0.01)
        targets = remaining()
    reap()


def _become_subreaper() -> None:
    """Makes this process, in place of init, the parent of whatever its descendants orphan (Linux):
    a job's double-forked or re-sessioned processes stay among its supervisor's descendants, to be
    reaped and ended with the job. Elsewhere the job's marker alone finds them."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def _damaged(path: Path, problem: str, fix: str) -> JobStateError:
    return JobStateError(f"The embedded engine's file {path} is damaged: {problem}. {fix}")


def _write_private(path: Path, text: str, exclusive: bool = False) -> None:
    """Writes `path`, readable by its owner only, whole: a reader sees the old file or the new one,
    never part of one. `exclusive` raises FileExistsError rather than replace an existing file (a
    hard link appears whole, and never replaces)."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as handle:
            handle.write(text)
        if exclusive:
            os.link(tmp, path)
        else:
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _make_private(tree: Path) -> None:
    """Takes group and other permissions off `tree` and everything in it: copies keep their
    sources' modes, archives extract with theirs, and a job can chmod what it writes. Links are
    left alone: chmod would follow them out of the tree."""
    walked = (Path(parent) / name for parent, dirs, files in os.walk(tree) for name in dirs + files)
    for path in (tree, *walked):
        try:
            mode = os.lstat(path).st_mode
            if mode & 0o077 and not stat.S_ISLNK(mode):
                os.chmod(path, stat.S_IMODE(mode) & ~0o077)
        except OSError:  # gone since, or not ours to change: the rest still is
            continue


def _tickets(queue: Path) -> list[Path]:
    """A device's queue: its tickets, oldest first (a ticket's name starts with its submission
    time). Anything else there, such as a ticket still being written, holds no place in it."""
    try:
        return sorted(t for t in queue.iterdir() if TICKET_NAME.fullmatch(t.name) and t.is_file())
    except FileNotFoundError:
        return []


def _referenced_job(root: Path, reference: Path, arn: str | None = None) -> JobStore:
    """The job an index (`arns/<id>`, which gives the job's `arn`) or a queue ticket names by its
    directory under the home. FileNotFoundError if `reference` is gone, JobNotFoundError if the
    directory it names is, JobStateError if it is not a reference the engine wrote."""
    try:
        text = reference.read_text()
    except FileNotFoundError:
        raise  # for the caller to judge: no such job, or a ticket released as it was read
    except (OSError, ValueError) as error:
        raise _damaged(reference, f"it cannot be read ({error})", "Remove it; other jobs are unaffected.") from None
    if not JOB_DIRECTORY.fullmatch(text):
        raise _damaged(reference, f"it holds {text[:100]!r}, not a job directory under {root / 'jobs'}",
                       "Remove it; other jobs are unaffected.")
    job = JobStore(root / text, arn)
    if not job.dir.is_dir():
        raise JobNotFoundError(
            f"{reference} names the job directory {job.dir}, which was removed: remove {reference} too."
        )
    return job


# What the engine, and whoever reads a job's metadata, take from a job's record: a key starting
# with `?` may be absent, a tuple lists the shapes a value may have, a frozenset the values it may
# take, `datetime` is an ISO 8601 time.
_RECORD_SHAPE: dict[str, Any] = {
    "jobArn": str, "jobName": str, "status": frozenset(JOB_STATES), "createdAt": datetime, "?startedAt": datetime,
    "?endedAt": datetime, "?failureReason": str, "?billableDuration": int, "roleArn": str,
    "algorithmSpecification": {"scriptModeConfig": {"entryPoint": str, "s3Uri": str, "compressionType": str}},
    "inputDataConfig": [{"channelName": str, "dataSource": {"s3DataSource": {"s3Uri": str}}}],
    "instanceConfig": dict, "stoppingCondition": {"maxRuntimeInSeconds": int}, "deviceConfig": {"device": str},
    "hyperParameters": dict, "tags": dict, "?associations": [{"arn": str}],
    "events": [{"eventType": str, "timeOfEvent": datetime}],
    "_engine": {"jobToken": str, "queueTicket": (str, None), "?supervisorPid": int, "?processGroup": int},
}


def _shape_problem(value: Any, shape: Any, where: str) -> str | None:
    """What keeps `value` (found at `where`) from having `shape` (see `_RECORD_SHAPE`), or None."""
    if isinstance(shape, tuple):
        problems = [_shape_problem(value, alternative, where) for alternative in shape]
        return None if None in problems else problems[0]
    if shape is None:
        return None if value is None else f"{where} is {value!r:.60}, not null"
    if isinstance(shape, frozenset):
        if isinstance(value, str) and value in shape:
            return None
        return f"{where} is {value!r:.60}, not one of {sorted(shape)}"
    if shape is datetime:
        try:
            datetime.fromisoformat(value)
            return None
        except (TypeError, ValueError):
            return f"{where} is {value!r:.60}, not an ISO 8601 time"
    if isinstance(shape, list):
        if not isinstance(value, list):
            return f"{where} is {value!r:.60}, not a list"
        problems = (_shape_problem(item, shape[0], f"{where}[{i}]") for i, item in enumerate(value))
        return next((p for p in problems if p), None)
    if isinstance(shape, dict):
        if not isinstance(value, dict):
            return f"{where or 'the record'} is {value!r:.60}, not an object"
        for key, inner in shape.items():
            name = key.lstrip("?")
            path = f"{where}.{name}" if where else name
            if name not in value:
                if key.startswith("?"):
                    continue
                return f"{path} is missing"
            problem = _shape_problem(value[name], inner, path)
            if problem:
                return problem
        return None
    if isinstance(value, shape) and not (isinstance(value, bool) and shape is not bool):
        return None
    return f"{where} is {value!r:.60}, not {shape.__name__}"


class JobStore:
    """One job's directory: its metadata under a lock, its log, its paths.

    `arn` is the job's when it was found by its index: a record of another job there is then the
    index's damage, not this job's record."""

    def __init__(self, directory: Path, arn: str | None = None):
        self.dir = directory
        self.root = directory.parents[2]
        self.arn = arn
        self.meta_file = directory / "job.json"
        self.log_file = directory / "log.txt"
        self.instance = directory / "instance"
        self.results_dir = self.instance / "model"
        self.failure_file = self.instance / FAILURE_FILE
        self.checkpoints = directory / "checkpoints"
        self.source_archive = directory / "script" / "source.tar.gz"
        self.output_archive = directory / "data" / "output" / "model.tar.gz"

    @contextmanager
    def locked(self) -> Iterator[None]:
        with open(os.open(self.dir / ".lock", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def read(self) -> dict[str, Any]:
        """The job's record, checked here, the one place it is read: what is not as the engine
        wrote it raises JobStateError naming the file and the fix, rather than a KeyError later."""
        try:
            meta = json.loads(self.meta_file.read_bytes())
        except FileNotFoundError:
            problem = "it is missing"
        except OSError as error:
            problem = f"it cannot be read ({error})"
        except ValueError as error:
            problem = f"it is not JSON ({error})"
        else:
            problem = _shape_problem(meta, _RECORD_SHAPE, "") or self._ticket_problem(meta["_engine"]["queueTicket"])
            if not problem and self.arn and meta["jobArn"] != self.arn:
                index = self.root / "arns" / self.arn[len(ARN_PREFIX):]
                raise _damaged(index, f"it names {self.dir}, the directory of another job ({meta['jobArn']})",
                               "Remove it; other jobs are unaffected.")
            if not problem:
                return meta
        raise _damaged(self.meta_file, problem,
                       f"Remove the job's directory {self.dir} or restore its job.json; other jobs are unaffected.")

    def _ticket_problem(self, ticket: str | None) -> str | None:
        # The file a record names as its ticket is deleted when the job ends: it must be a ticket.
        queues = self.root / "queues"
        if ticket is None or (
            TICKET_NAME.fullmatch(Path(ticket).name) and Path(ticket).parent.parent.resolve() == queues.resolve()
        ):
            return None
        return f"_engine.queueTicket {ticket!r} is not a ticket in {queues}"

    def write(self, meta: dict[str, Any]) -> None:
        _write_private(self.meta_file, json.dumps(meta, indent=1))

    def update(self, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        with self.locked():
            meta = self.read()
            change(meta)
            self.write(meta)
            return meta


def _add_event(meta: dict[str, Any], event_type: str, message: str = "") -> None:
    meta.setdefault("events", []).append({"eventType": event_type, "timeOfEvent": _now(), "message": message})
    del meta["events"][:-20]  # GetJob keeps the last 20


class LocalEngine:
    """Runs hybrid jobs as local processes; implements `prefect_braket.backend.JobBackend`.

    Example:
        ```python
        engine = LocalEngine()                  # jobs under $PREFECT_BRAKET_HOME
        arn = engine.create_job(spec)           # returns at once; the job runs detached
        engine.get_job(arn)["status"]           # "QUEUED", "RUNNING", "COMPLETED", ...
        ```
    """

    name = "local"

    def __init__(self, root: Path | str | None = None):
        self.root = Path(root) if root else package_home()

    def __repr__(self) -> str:
        return f"LocalEngine(root={str(self.root)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LocalEngine) and other.root == self.root

    def __hash__(self) -> int:
        return hash(self.root)

    # -- locating jobs ---------------------------------------------------------------------------

    def store(self, job_arn: str) -> JobStore:
        """The directory of the job with this ARN."""
        if not job_arn.startswith(ARN_PREFIX):
            raise JobNotFoundError(f"{job_arn!r} is not an embedded-engine job ARN ({ARN_PREFIX}<id>).")
        job_id = job_arn[len(ARN_PREFIX):]
        missing = JobNotFoundError(f"No job {job_arn} under {self.root} (is {HOME_VARIABLE} the same?).")
        if not JOB_ID.fullmatch(job_id):  # an id the engine never gives, which may name a path
            raise missing
        try:
            return _referenced_job(self.root, self.root / "arns" / job_id, job_arn)
        except FileNotFoundError:
            raise missing from None

    def _private_dir(self, directory: Path) -> Path:
        """`directory`, a directory in the home, made with whatever is missing between it and the
        home, each its owner's alone; a looser home (it is the user's own) is tightened."""
        path = self.root
        for part in ("", *directory.relative_to(self.root).parts):
            path = path / part
            try:
                private_directory(path)
            except (FileExistsError, NotADirectoryError):
                raise _damaged(path, "it is not a directory", "Remove it; the engine makes it again.") from None
        return directory

    # -- JobBackend ------------------------------------------------------------------------------

    def create_job(
        self, spec: JobSpec, client_token: str | None = None, initial_checkpoints: Path | None = None
    ) -> str:
        """Creates and starts a job; `initial_checkpoints` (a directory) are in its checkpoint
        directory before it starts, as `copy_checkpoints_from_job`'s are."""
        self._reap()
        earlier = self._refuse_what_cannot_run(spec)
        job_id = uuid.uuid4().hex
        if not client_token:
            return self._create(spec, job_id, earlier, initial_checkpoints)
        claim = self._private_dir(self.root / "tokens") / hashlib.sha256(client_token.encode()).hexdigest()
        while True:
            try:
                _write_private(claim, ARN_PREFIX + job_id, exclusive=True)  # names the job before it exists
                break
            except FileExistsError:
                existing = self._claimed_arn(claim)
                if existing:
                    return existing
        try:
            return self._create(spec, job_id, earlier, initial_checkpoints)
        except BaseException:
            claim.unlink(missing_ok=True)
            raise

    def _refuse_what_cannot_run(self, spec: JobSpec) -> JobStore | None:
        """Raises for a job this engine cannot take, before anything of it is created; returns the
        job whose checkpoints it starts from, if any. Its files are checked again, as JobSpec
        checked them: they may have gone since."""
        for channel, location in spec.input_data.items():
            if str(location).startswith("s3://"):
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

    def _claimed_arn(self, claim: Path) -> str | None:
        """The job a claim names, once it exists; None if the claim was abandoned (its submitter died
        before creating the job), which the claim then no longer blocks."""
        fix = ("Remove it: a submission with this client token then creates its job anew; other client tokens "
               "are unaffected.")
        deadline = time.monotonic() + ORPHAN_GRACE_SECONDS
        while True:
            try:
                arn = claim.read_text().strip()
                age = time.time() - claim.stat().st_mtime
            except FileNotFoundError:
                return None  # its submission failed and withdrew the claim
            except (OSError, ValueError) as error:
                raise _damaged(claim, f"it cannot be read ({error})", fix) from None
            if not (arn.startswith(ARN_PREFIX) and JOB_ID.fullmatch(arn[len(ARN_PREFIX):])):
                raise _damaged(claim, f"it holds {arn[:100]!r}, not a job ARN", fix)
            if (self.root / "arns" / arn[len(ARN_PREFIX):]).exists():
                return arn
            if age > ORPHAN_GRACE_SECONDS * 3 or time.monotonic() > deadline:
                if age > ORPHAN_GRACE_SECONDS * 3:
                    claim.unlink(missing_ok=True)
                    return None
                raise SubmissionInProgress(f"A submission with this client token is still creating {arn}; try again.")
            time.sleep(0.02)

    def _create(
        self, spec: JobSpec, job_id: str, earlier: JobStore | None, initial_checkpoints: Path | None
    ) -> str:
        arn = ARN_PREFIX + job_id
        names = self._private_dir(self.root / "jobs" / spec.job_name)
        stamp = int(time.time() * 1000)
        while True:
            directory = names / str(stamp)
            try:
                directory.mkdir(mode=0o700)
                break
            except FileExistsError:
                stamp += 1
        job = JobStore(directory)
        index = self.root / "arns" / job_id
        ticket = None
        if is_qpu(spec.device):  # named by the time of submission, the queue's order
            ticket = self.root / "queues" / _slug(spec.device) / f"{time.time_ns():020d}-{job_id}"
        try:
            self._populate(spec, job, earlier, initial_checkpoints)
            meta = self._record(spec, job, arn, ticket)
            job.write(meta)
            relative = str(directory.relative_to(self.root))
            if ticket is not None:  # after job.json: whoever reads the ticket finds the job
                _write_private(self._private_dir(ticket.parent) / ticket.name, relative)
            _write_private(self._private_dir(index.parent) / index.name, relative)
            supervisor_log = os.open(directory / "supervisor.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                process = subprocess.Popen(
                    [sys.executable, "-m", "prefect_braket.backends.local.engine", str(directory)],
                    stdin=subprocess.DEVNULL,
                    stdout=supervisor_log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    close_fds=True,
                    umask=0o077,  # the supervisor's, so the job's: what they write is the owner's alone
                )
            finally:
                os.close(supervisor_log)
        except BaseException:
            # Nothing half-made is left: a job is whole, or it is not there at all.
            for made in (index, ticket):
                if made is not None:
                    with suppress(OSError):  # not made, or where it could not be (what failed)
                        made.unlink()
            shutil.rmtree(directory, ignore_errors=True)
            raise
        _spawned.append(process)
        return arn

    def _populate(
        self, spec: JobSpec, job: JobStore, earlier: JobStore | None, initial_checkpoints: Path | None
    ) -> None:
        """Puts a new job's files in place (its source, input data, checkpoints, hyperparameters),
        its owner's alone however the copies' sources were readable."""
        if Path(spec.source_module).name.endswith(".tar.gz"):
            job.source_archive.parent.mkdir()
            shutil.copyfile(spec.source_module, job.source_archive)
        else:
            pack_source(spec.source_module, job.source_archive)
        self._stage_input_data(spec, job.dir / "data")
        job.checkpoints.mkdir()
        if earlier is not None:
            shutil.copytree(earlier.checkpoints, job.checkpoints, dirs_exist_ok=True)
        if initial_checkpoints is not None and initial_checkpoints.is_dir():
            shutil.copytree(initial_checkpoints, job.checkpoints, dirs_exist_ok=True)
        config = job.instance / "input" / "config" / "hyperparameters.json"
        config.parent.mkdir(parents=True)
        config.write_text(json.dumps(spec.hyperparameters))
        job.results_dir.mkdir()
        job.log_file.touch()
        _make_private(job.dir)

    @staticmethod
    def _record(spec: JobSpec, job: JobStore, arn: str, ticket: Path | None) -> dict[str, Any]:
        """A new job's job.json: what GetJob would say of it, and the engine's own `_engine` part."""
        meta = {
            "jobArn": arn,
            "jobName": spec.job_name,
            "status": "QUEUED",
            "createdAt": _now(),
            "roleArn": spec.role_arn or "",
            "algorithmSpecification": {
                "scriptModeConfig": {
                    "entryPoint": spec.entry_point,
                    "s3Uri": str(job.source_archive),
                    "compressionType": "GZIP",
                }
            },
            "inputDataConfig": [
                {"channelName": channel, "dataSource": {"s3DataSource": {"s3Uri": str(job.dir / "data" / channel)}}}
                for channel in spec.input_data
            ],
            "instanceConfig": vars(spec.instance_config),
            "outputDataConfig": {"s3Path": str(job.dir / "data")},
            "checkpointConfig": {"localPath": str(job.checkpoints), "s3Uri": str(job.checkpoints)},
            "stoppingCondition": vars(spec.stopping_condition),
            "deviceConfig": {"device": spec.device},
            "hyperParameters": spec.hyperparameters,
            "tags": spec.tags,
            "events": [],
            "_engine": {"jobToken": secrets.token_hex(32), "queueTicket": str(ticket) if ticket else None},
        }
        if spec.reservation_arn:
            meta["associations"] = [{"arn": spec.reservation_arn, "type": "RESERVATION_TIME_WINDOW_ARN"}]
        if ticket is not None:
            _add_event(meta, "WAITING_FOR_PRIORITY", f"Waiting for {spec.device}, which runs one job at a time.")
        else:
            _add_event(meta, "QUEUED_FOR_EXECUTION")
        return meta

    @staticmethod
    def _stage_input_data(spec: JobSpec, data_dir: Path) -> None:
        for channel, location in spec.input_data.items():
            # As Braket's container sees it: a file inside the channel, or a directory's contents.
            source = Path(location)
            channel_dir = data_dir / channel
            if source.is_dir():
                shutil.copytree(source, channel_dir)
            else:
                channel_dir.mkdir(parents=True)
                shutil.copy2(source, channel_dir / source.name)

    def get_job(self, job_arn: str) -> dict[str, Any]:
        self._reap()
        job = self.store(job_arn)
        meta = job.read()
        if meta["status"] not in TERMINAL_STATES and not _pid_alive(meta["_engine"].get("supervisorPid"), str(job.dir)):
            meta = self._settle_orphan(job)
        public = {k: v for k, v in meta.items() if not k.startswith("_")}
        for key in ("createdAt", "startedAt", "endedAt"):
            if key in public:
                public[key] = datetime.fromisoformat(public[key])
        for event in public["events"]:
            event["timeOfEvent"] = datetime.fromisoformat(event["timeOfEvent"])
        public["queueInfo"] = self._queue_info(meta)
        return public

    def _settle_orphan(self, job: JobStore) -> dict[str, Any]:
        """Ends the record of a job whose supervisor is gone (killed, or the machine restarted), and
        whatever of the job still runs."""
        # A supervisor without a pid on record may be starting (a loaded machine can take
        # seconds): give it time. One that recorded its pid ends the job's record before it exits.
        deadline = time.monotonic() + ORPHAN_GRACE_SECONDS
        while True:
            meta = job.read()
            pid = meta["_engine"].get("supervisorPid")
            if meta["status"] in TERMINAL_STATES or _pid_alive(pid, str(job.dir)):
                return meta
            if pid is not None or time.monotonic() > deadline:
                break
            time.sleep(0.05)

        def settle(meta: dict[str, Any]) -> None:
            if meta["status"] in TERMINAL_STATES:
                return
            _end_processes(job.instance, grace=0.5, recorded=meta["_engine"].get("processGroup"))
            if meta["status"] == "CANCELLING":
                meta["status"] = "CANCELLED"
                _add_event(meta, "CANCELLED")
            else:
                _fail_as_lost(meta, "the engine process supervising it ended unexpectedly (killed, or the "
                                    "machine restarted)")
            meta["endedAt"] = _now()
            _release_ticket(meta)

        return job.update(settle)

    def _queue_info(self, meta: dict[str, Any]) -> dict[str, str]:
        if meta["status"] != "QUEUED":
            return {
                "queue": "JOBS_QUEUE",
                "position": "None",
                "message": f"Job is in {meta['status']} status. AmazonBraket does not show queue position for this status.",
            }
        # The jobs ahead on a QPU hold or wait for the device.
        ticket = meta["_engine"]["queueTicket"]
        ahead = sum(1 for t in _tickets(Path(ticket).parent) if t.name < Path(ticket).name) if ticket else 0
        return {"queue": "JOBS_QUEUE", "position": str(ahead)}

    def cancel_job(self, job_arn: str) -> str:
        job = self.store(job_arn)

        def request(meta: dict[str, Any]) -> None:
            if meta["status"] not in TERMINAL_STATES:
                meta["status"] = "CANCELLING"

        meta = job.update(request)
        if meta["status"] in TERMINAL_STATES:
            return meta["status"]
        pid = meta["_engine"].get("supervisorPid")
        if _pid_alive(pid, str(job.dir)):
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
            status = job.read()["status"]
            raise FileNotFoundError(f"Job {job_arn} has no model.tar.gz yet (status {status}): {job.output_archive}.")
        shutil.copyfile(job.output_archive, destination_file)
        return Path(destination_file)

    def resubmit_job(self, job_arn: str, client_token: str) -> str:
        job = self.store(job_arn)
        meta = job.read()
        name = replacement_name(meta["jobName"])
        with tempfile.TemporaryDirectory(prefix="prefect-braket-checkpoints-") as tmp:
            for path in (p for p in job.checkpoints.rglob("*") if p.is_file() and not p.name.startswith(".")):
                relative = path.relative_to(job.checkpoints)
                target = Path(tmp) / relative.parent / checkpoint_name_for(path.name, meta["jobName"], name)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target)
            spec = JobSpec(
                job_name=name, device=meta["deviceConfig"]["device"], source_module=job.source_archive,
                entry_point=meta["algorithmSpecification"]["scriptModeConfig"]["entryPoint"],
                hyperparameters=meta["hyperParameters"],
                input_data={c["channelName"]: c["dataSource"]["s3DataSource"]["s3Uri"] for c in meta["inputDataConfig"]},
                instance_config=InstanceConfig(**meta["instanceConfig"]),
                stopping_condition=StoppingCondition(**meta["stoppingCondition"]),
                role_arn=meta["roleArn"] or None, tags={**meta["tags"], REPLACES_TAG: job_arn},
                reservation_arn=next((a["arn"] for a in meta.get("associations", [])), None),
            )
            return self.create_job(spec, client_token=client_token, initial_checkpoints=Path(tmp))

    # -- for diagnostics and tests ---------------------------------------------------------------

    def kill_instance(self, job_arn: str) -> None:
        """Ends a job as a lost machine would: its processes killed at once, the job FAILED with an
        instance-failure reason (`backend.is_instance_failure`), its checkpoints kept."""
        job = self.store(job_arn)
        supervisor = job.read()["_engine"].get("supervisorPid")
        if _pid_alive(supervisor, str(job.dir)):
            os.kill(supervisor, signal.SIGKILL)
        # The supervisor records the job's process only after starting it, so it is found by its
        # environment. A lost machine gives its processes no SIGTERM to act on.
        _end_processes(job.instance, grace=0, recorded=job.read()["_engine"].get("processGroup"))

        def lost(meta: dict[str, Any]) -> None:
            if meta["status"] in TERMINAL_STATES:
                return
            _fail_as_lost(meta, "its instance stopped")
            meta["endedAt"] = _now()
            _release_ticket(meta)

        job.update(lost)

    def process_ids(self, job_arn: str) -> dict[str, int | None]:
        """The supervisor's pid and the job's process group (its process ids' group)."""
        engine = self.store(job_arn).read()["_engine"]
        return {"supervisor": engine.get("supervisorPid"), "process_group": engine.get("processGroup")}

    def job_token(self, job_arn: str) -> str:
        """The token the job's tasks carry to get its device's priority."""
        return self.store(job_arn).read()["_engine"]["jobToken"]

    def job_directory(self, job_arn: str) -> Path:
        """Where the job's files are (the Braket S3 layout, on disk)."""
        return self.store(job_arn).dir

    def checkpoint_directory(self, job_arn: str) -> Path:
        """Where the job writes its checkpoints, as they are written (for a bridge that syncs them)."""
        return self.store(job_arn).checkpoints

    def output_archive(self, job_arn: str) -> Path:
        """Where the job's `model.tar.gz` is once it has ended (it may not exist)."""
        return self.store(job_arn).output_archive

    @staticmethod
    def _reap() -> None:
        _spawned[:] = [p for p in _spawned if p.poll() is None]


def _fail_as_lost(meta: dict[str, Any], what: str) -> None:
    meta["status"] = "FAILED"
    meta["failureReason"] = (
        f"{INSTANCE_FAILURE_PREFIX}: The job was lost: {what}. Its checkpoints are kept; "
        "waiting for it resubmits it from them (resubmit_on_instance_failure)."
    )
    _add_event(meta, "FAILED", meta["failureReason"])


def _release_ticket(meta: dict[str, Any]) -> None:
    ticket = meta["_engine"].get("queueTicket")
    if ticket:
        Path(ticket).unlink(missing_ok=True)


# -- the supervisor: one detached process per job ------------------------------------------------


class _Supervisor:
    """Runs one job, detached from whoever submitted it, and ends it whatever way it goes: nothing
    of the job runs on after it (the supervisor is the subreaper of what the job orphans, and
    reaps it), its results are packed, and its record says how it ended unless that record is
    what broke."""

    def __init__(self, directory: Path):
        self.job = JobStore(directory)
        self.process: subprocess.Popen | None = None
        self.cancel_requested = False
        signal.signal(signal.SIGTERM, self._on_sigterm)

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        self.cancel_requested = True

    def run(self) -> None:
        _become_subreaper()
        meta = None
        try:
            meta = self.job.update(lambda m: m["_engine"].update(supervisorPid=os.getpid()))
            if meta["status"] in TERMINAL_STATES:  # settled as lost before this process got going
                return
            if meta["_engine"]["queueTicket"] and not self._wait_for_device(meta):
                self._finish("CANCELLED", None, "CANCELLED")
                return
            self._start_and_watch(meta)
        except BaseException as error:  # nothing may leave a job unfinished on disk, nor running
            self._finish("FAILED", f"The engine failed to run the job: {type(error).__name__}: {error}", "FAILED")
            raise
        finally:
            if meta is not None:  # from memory: the device is free even if the record is damaged
                _release_ticket(meta)

    def _wait_for_device(self, meta: dict[str, Any]) -> bool:
        ticket = Path(meta["_engine"]["queueTicket"])
        while not self.cancel_requested:
            if self.job.read()["status"] == "CANCELLING":
                return False
            ahead = [t for t in _tickets(ticket.parent) if t.name < ticket.name]
            if not ahead:
                return True
            head = ahead[0]
            try:
                holder = _referenced_job(self.job.root, head)
                holder_meta = holder.read()
                pid = holder_meta["_engine"].get("supervisorPid")
                age = (datetime.now(timezone.utc) - datetime.fromisoformat(holder_meta["createdAt"])).total_seconds()
                stale = holder_meta["status"] in TERMINAL_STATES or (
                    not _pid_alive(pid, str(holder.dir)) if pid is not None else age > ORPHAN_GRACE_SECONDS * 3
                )
            except FileNotFoundError:
                stale = True  # released as it was read
            except (JobNotFoundError, JobStateError) as error:
                # A ticket that leads to no readable job holds the device for nobody: its job's own
                # supervisor, if any, cannot read the record either, and ends it.
                print(f"Passing over the queue ticket {head}: {error}", flush=True)
                stale = True
            if stale:
                head.unlink(missing_ok=True)
                continue
            time.sleep(QUEUE_POLL_SECONDS)
        return False

    def _environment(self, meta: dict[str, Any]) -> dict[str, str]:
        job = self.job
        spec = meta["algorithmSpecification"]["scriptModeConfig"]
        env = dict(os.environ)
        env.update(
            PYTHONUNBUFFERED="1",
            AMZN_BRAKET_JOB_NAME=meta["jobName"],
            AMZN_BRAKET_DEVICE_ARN=meta["deviceConfig"]["device"],
            AMZN_BRAKET_JOB_RESULTS_DIR=str(job.results_dir),
            AMZN_BRAKET_CHECKPOINT_DIR=str(job.checkpoints),
            AMZN_BRAKET_HP_FILE=str(job.instance / "input" / "config" / "hyperparameters.json"),
            AMZN_BRAKET_SCRIPT_S3_URI=spec["s3Uri"],
            AMZN_BRAKET_SCRIPT_ENTRY_POINT=spec["entryPoint"],
            AMZN_BRAKET_SCRIPT_COMPRESSION_TYPE=spec["compressionType"],
            AMZN_BRAKET_JOB_RESULTS_S3_PATH=str(job.output_archive.parent),
            AMZN_BRAKET_TASK_RESULTS_S3_URI=str(job.dir / "tasks"),
            AMZN_BRAKET_JOB_TOKEN=meta["_engine"]["jobToken"],
            **{INSTANCE_VARIABLE: str(job.instance)},
        )
        if meta["inputDataConfig"]:
            env["AMZN_BRAKET_INPUT_DIR"] = str(job.dir / "data")
        return env

    def _start_and_watch(self, meta: dict[str, Any]) -> None:
        def started(m: dict[str, Any]) -> None:
            m["startedAt"] = _now()
            if m["status"] != "CANCELLING":
                m["status"] = "RUNNING"
            _add_event(m, "STARTING_INSTANCE", "Starting a local process.")
            _add_event(m, "RUNNING")

        meta = self.job.update(started)
        with open(self.job.log_file, "ab") as log:
            process = self.process = subprocess.Popen(
                [sys.executable, "-m", "prefect_braket.backends.local.container"],
                env=self._environment(meta),
                cwd=self.job.instance,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.job.update(lambda m: m["_engine"].update(processGroup=process.pid))
        limit = meta["stoppingCondition"]["maxRuntimeInSeconds"]
        deadline = time.monotonic() + limit
        while True:
            self._reap()
            if self.cancel_requested or self.job.read()["status"] == "CANCELLING":
                self._finish("CANCELLED", None, "CANCELLED")
                return
            if time.monotonic() > deadline:
                self._finish(
                    "FAILED", f"The job exceeded its maximum runtime of {limit} seconds.", "MAX_RUNTIME_EXCEEDED"
                )
                return
            try:
                code = process.wait(timeout=0.05)
                break
            except subprocess.TimeoutExpired:
                continue
        # A container ends everything it started; so does a local job (in `_finish`).
        if code == 0 and not self.job.failure_file.exists():
            self._finish("COMPLETED", None, "COMPLETED", grace=LEFTOVER_GRACE_SECONDS)
            return
        reason = self.job.failure_file.read_text().strip() if self.job.failure_file.exists() else ""
        if not reason:
            if code < 0:
                try:
                    name = f" ({signal.Signals(-code).name})"
                except ValueError:
                    name = ""
                reason = f"The job's process was killed by signal {-code}{name}."
            else:
                reason = f"The job's process exited with code {code}."
        self._finish("FAILED", reason[:1024], "FAILED", grace=LEFTOVER_GRACE_SECONDS)

    def _reap(self) -> None:
        """Collects the job's ended processes: its own (whose exit code Popen keeps) and those it
        orphaned, which, reparented to this subreaper, would stay zombies while it runs."""
        if not hasattr(os, "waitid"):  # nor a subreaper: the job's own process is the only child
            if self.process is not None:
                self.process.poll()
            return
        while True:
            try:
                ended = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                return
            if ended is None:
                return
            if self.process is not None and ended.si_pid == self.process.pid:
                self.process.poll()
            else:
                os.waitpid(ended.si_pid, 0)

    def _finish(self, status: str, reason: str | None, event: str, grace: float = CANCEL_GRACE_SECONDS) -> None:
        """Ends the job: first every process of it (SIGTERM, SIGKILL after `grace`), so that nothing
        writes on while its results are packed, then its files made private, then its record."""
        job = self.job
        _end_processes(job.instance, grace, recorded=self.process and self.process.pid, supervisor=os.getpid(),
                       reap=self._reap)
        job.update(lambda m: _add_event(m, "UPLOADING_RESULTS"))
        try:
            pack_directory(job.results_dir, job.output_archive)
        except OSError as error:
            reason = (reason + "; " if reason else "") + f"packing results failed: {error}"
            status, event = "FAILED", "FAILED"
        _make_private(job.dir)

        def finish(meta: dict[str, Any]) -> None:
            meta["status"] = status
            if reason:
                meta["failureReason"] = reason
            meta["endedAt"] = _now()
            if "startedAt" in meta:
                started = datetime.fromisoformat(meta["startedAt"])
                meta["billableDuration"] = int((datetime.now(timezone.utc) - started).total_seconds() * 1000)
            _add_event(meta, event, reason or "")

        job.update(finish)


if __name__ == "__main__":
    _Supervisor(Path(sys.argv[1])).run()
