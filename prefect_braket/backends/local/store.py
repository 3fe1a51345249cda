"""Where the embedded engine keeps its jobs, under its home, and how it reads them back.

    arns/{id}                        the index: the directory of the job `local:job/{id}`
    tokens/{sha256 of a token}       a claim: the ARN that a client token's submission creates
    queues/{device}/{time}-{id}      a ticket: a job's place in its QPU's queue (`queue`)
    jobs/{name}/{ts}/                one job (`JobStore`), in Braket's S3 layout

An index, a claim and a ticket each name a job by its directory or ARN, in the forms the engine
gives them (`JOB_ID`, `JOB_DIRECTORY`, `TICKET_NAME`), which is all it accepts back: what is
not as the engine wrote it raises `JobStateError` naming the file and the fix when it is read,
and other jobs are unaffected. Everything here is its owner's alone: directories 0700
(`private_dir`), files 0600 (`write_atomically`), and `make_private` for what others copied in.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import stat
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from prefect_braket.backends.local.record import JobRecord, damaged, damaged_record
from prefect_braket.core.errors import JobNotFoundError, SubmissionInProgress
from prefect_braket.core.home import HOME_VARIABLE, private_directory
from prefect_braket.jobs.data_persistence import write_atomically
from prefect_braket.jobs.environment import FAILURE_FILE

ARN_PREFIX = "local:job/"
# The names the engine gives things, which is all it accepts back from disk.
JOB_ID = re.compile(r"[0-9a-f]{32}")
JOB_DIRECTORY = re.compile(r"jobs/[A-Za-z0-9-]{1,50}/\d+")  # relative to the home
TICKET_NAME = re.compile(r"\d{20}-[0-9a-f]{32}")  # submission time, job id
# How long a process just started may take to show itself (record its pid, create the job it
# claimed): on a loaded machine, seconds. Three times as old, it is taken for dead.
ORPHAN_GRACE_SECONDS = 10.0
REMOVE_IT = "Remove it; other jobs are unaffected."


class JobStore:
    """One job's directory: its record under a lock, its log, its paths.

    `arn` is the job's when it was found by its index: a record of another job there is then the
    index's damage, not this job's record."""

    def __init__(self, directory: Path, arn: str | None = None):
        self.dir = directory
        self.root = directory.parents[2]
        self.arn = arn
        self.meta_file = directory / "job.json"
        self.log_file = directory / "log.txt"
        self.supervisor_log = directory / "supervisor.log"
        self.instance = directory / "instance"  # the job's working area while it runs
        self.hyperparameters_file = self.instance / "input" / "config" / "hyperparameters.json"
        self.results_dir = self.instance / "model"
        self.failure_file = self.instance / FAILURE_FILE
        self.checkpoints = directory / "checkpoints"
        self.source_archive = directory / "script" / "source.tar.gz"
        self.data_dir = directory / "data"  # input channels, and output/model.tar.gz
        self.output_archive = self.data_dir / "output" / "model.tar.gz"

    @contextmanager
    def locked(self) -> Iterator[None]:
        with open(os.open(self.dir / ".lock", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def read(self) -> JobRecord:
        """The job's record, checked here, the one place it is read: what is not as the engine
        wrote it raises JobStateError naming the file and the fix, rather than a KeyError later."""
        record = JobRecord.from_json(self._load(), self.meta_file)
        problem = self._ticket_problem(record.engine.queue_ticket)
        if problem:
            raise damaged_record(self.meta_file, problem)
        if self.arn and record.job_arn != self.arn:
            raise damaged(index_file(self.root, self.arn),
                          f"it names {self.dir}, the directory of another job ({record.job_arn})", REMOVE_IT)
        return record

    def _load(self) -> object:
        try:
            return json.loads(self.meta_file.read_bytes())
        except FileNotFoundError:
            problem = "it is missing"
        except OSError as error:
            problem = f"it cannot be read ({error})"
        except ValueError as error:
            problem = f"it is not JSON ({error})"
        raise damaged_record(self.meta_file, problem)

    def _ticket_problem(self, ticket: Path | None) -> str | None:
        # The file a record names as its ticket is deleted when the job ends: it must be a ticket.
        queues = self.root / "queues"
        if ticket is None:
            return None
        if TICKET_NAME.fullmatch(ticket.name) and ticket.parent.parent.resolve() == queues.resolve():
            return None
        return f"_engine.queueTicket {str(ticket)!r} is not a ticket in {queues}"

    def write(self, record: JobRecord) -> None:
        write_atomically(self.meta_file, record.to_json())

    def update(self, change: Callable[[JobRecord], None]) -> JobRecord:
        """Reads the record, changes it and writes it back, under the job's lock; returns it."""
        with self.locked():
            record = self.read()
            change(record)
            self.write(record)
            return record


# -- the home: index, claims, tickets ------------------------------------------------------------


def index_file(root: Path, job_arn: str) -> Path:
    return root / "arns" / job_arn[len(ARN_PREFIX):]


def find_job(root: Path, job_arn: str) -> JobStore:
    """The directory of the job with this ARN, by its index; JobNotFoundError if there is none."""
    if not job_arn.startswith(ARN_PREFIX):
        raise JobNotFoundError(f"{job_arn!r} is not an embedded-engine job ARN ({ARN_PREFIX}<id>).")
    missing = JobNotFoundError(f"No job {job_arn} under {root} (is {HOME_VARIABLE} the same?).")
    if not JOB_ID.fullmatch(job_arn[len(ARN_PREFIX):]):  # an id the engine never gives, which may name a path
        raise missing
    try:
        return referenced_job(root, index_file(root, job_arn), job_arn)
    except FileNotFoundError:
        raise missing from None


def referenced_job(root: Path, reference: Path, arn: str | None = None) -> JobStore:
    """The job an index (`arns/<id>`, which gives the job's `arn`) or a queue ticket names by its
    directory under the home. FileNotFoundError if `reference` is gone, JobNotFoundError if the
    directory it names is, JobStateError if it is not a reference the engine wrote."""
    try:
        text = reference.read_text()
    except FileNotFoundError:
        raise  # for the caller to judge: no such job, or a ticket released as it was read
    except (OSError, ValueError) as error:
        raise damaged(reference, f"it cannot be read ({error})", REMOVE_IT) from None
    if not JOB_DIRECTORY.fullmatch(text):
        raise damaged(reference, f"it holds {text[:100]!r}, not a job directory under {root / 'jobs'}", REMOVE_IT)
    job = JobStore(root / text, arn)
    if not job.dir.is_dir():
        raise JobNotFoundError(
            f"{reference} names the job directory {job.dir}, which was removed: remove {reference} too."
        )
    return job


def tickets(queue: Path) -> list[Path]:
    """A device's queue: its tickets, oldest first (a ticket's name starts with its submission
    time). Anything else there, such as a ticket still being written, holds no place in it."""
    try:
        return sorted(t for t in queue.iterdir() if TICKET_NAME.fullmatch(t.name) and t.is_file())
    except FileNotFoundError:
        return []


def claimed_arn(root: Path, claim: Path) -> str | None:
    """The job a client token's claim names, once that job exists; None if the claim was withdrawn
    or abandoned (its submitter died before creating the job), which then no longer blocks."""
    deadline = time.monotonic() + ORPHAN_GRACE_SECONDS
    while True:
        arn, age = _read_claim(claim)
        if arn is None:
            return None  # its submission failed and withdrew the claim
        if index_file(root, arn).exists():
            return arn
        if age > ORPHAN_GRACE_SECONDS * 3:
            claim.unlink(missing_ok=True)
            return None
        if time.monotonic() > deadline:
            raise SubmissionInProgress(f"A submission with this client token is still creating {arn}; try again.")
        time.sleep(0.02)


def _read_claim(claim: Path) -> tuple[str | None, float]:
    """The ARN a claim names and the claim's age in seconds; (None, 0) if there is no claim."""
    fix = ("Remove it: a submission with this client token then creates its job anew; other client tokens "
           "are unaffected.")
    try:
        arn = claim.read_text().strip()
        age = time.time() - claim.stat().st_mtime
    except FileNotFoundError:
        return None, 0.0
    except (OSError, ValueError) as error:
        raise damaged(claim, f"it cannot be read ({error})", fix) from None
    if not (arn.startswith(ARN_PREFIX) and JOB_ID.fullmatch(arn[len(ARN_PREFIX):])):
        raise damaged(claim, f"it holds {arn[:100]!r}, not a job ARN", fix)
    return arn, age


# -- permissions ---------------------------------------------------------------------------------


def private_dir(root: Path, directory: Path) -> Path:
    """`directory`, a directory in the home `root`, made with whatever is missing between it and
    the home, each its owner's alone; a looser home (it is the user's own) is tightened."""
    path = root
    for part in ("", *directory.relative_to(root).parts):
        path = path / part
        try:
            private_directory(path)
        except (FileExistsError, NotADirectoryError):
            raise damaged(path, "it is not a directory", "Remove it; the engine makes it again.") from None
    return directory


def make_private(tree: Path) -> None:
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
