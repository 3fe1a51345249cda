"""The embedded engine: hybrid jobs as detached local processes, with no AWS account and no Docker.

Each job runs under the contract of Braket's container (`prefect_braket.container`): its source
archive, entry point, hyperparameters file, input channels, checkpoint directory and results
directory, and every `AMZN_BRAKET_*` variable including a job token. A supervisor process, in a
session of its own, outlives whoever submitted the job: it queues the job behind others on the
same QPU, enforces the maximum runtime, ends the job's whole process group on cancel, and packs
the results directory into `model.tar.gz`, whatever way the job ended.

State lives on disk under `$PREFECT_BRAKET_HOME` (default `~/.prefect_braket`), in a layout that
mirrors Braket's S3 layout, so any process can re-attach to a job by its ARN:

    jobs/{name}/{ts}/script/source.tar.gz
    jobs/{name}/{ts}/data/{channel}/...            input data
    jobs/{name}/{ts}/data/output/model.tar.gz      results
    jobs/{name}/{ts}/checkpoints/{name}.json
    jobs/{name}/{ts}/job.json                      GetJob-shaped metadata
    jobs/{name}/{ts}/log.txt                       the job's live log
    jobs/{name}/{ts}/instance/                     the job's working area while it runs
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

from prefect_braket.archive import pack_directory, pack_source, safe_extract
from prefect_braket.backend import (
    INSTANCE_FAILURE_PREFIX, REPLACES_TAG, TERMINAL_STATES, JobNotFoundError, LogChunk, SubmissionInProgress, replacement_name,
)
from prefect_braket.job_spec import InstanceConfig, JobSpec, StoppingCondition
from prefect_braket.jobs import checkpoint_name_for

HOME_VARIABLE = "PREFECT_BRAKET_HOME"
ARN_PREFIX = "local:job/"
INSTANCE_VARIABLE = "PREFECT_BRAKET_INSTANCE_DIR"  # in a job's environment: its instance directory
CANCEL_GRACE_SECONDS = 2.0
ORPHAN_GRACE_SECONDS = 10.0
QUEUE_POLL_SECONDS = 0.05

_spawned: list[subprocess.Popen] = []


def default_root() -> Path:
    """Where the engine keeps its jobs: `$PREFECT_BRAKET_HOME`, else `~/.prefect_braket`."""
    return Path(os.environ.get(HOME_VARIABLE) or Path.home() / ".prefect_braket")


def is_qpu(device: str) -> bool:
    """Whether a device runs one job at a time (a QPU) rather than many (a simulator)."""
    return "/qpu/" in device


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


def _group_alive(pgid: int | None) -> bool:
    if not pgid:
        return False
    try:
        os.killpg(pgid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def _kill_group(pgid: int | None, grace: float = CANCEL_GRACE_SECONDS, leader: subprocess.Popen | None = None) -> None:
    """Ends a process group: SIGTERM, then SIGKILL for whatever is still there after `grace`.

    `leader` is the group's leader when it is our child: it is reaped as it ends, since a zombie
    still counts as a member of its group.
    """
    if not _group_alive(pgid):
        return
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and _group_alive(pgid):
        if leader is not None:
            leader.poll()
        time.sleep(0.02)
    if _group_alive(pgid):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _job_process_groups(instance: Path, recorded: int | None) -> set[int]:
    """The process groups of the live processes of the job with this instance directory, found by
    the variable their environment carries: a recorded group number may be stale (after a restart
    it can belong to somebody else's processes) or not written yet. Without /proc, the recorded one."""
    if not Path("/proc").exists():
        return {recorded} if recorded is not None and _group_alive(recorded) else set()
    marker = f"\0{INSTANCE_VARIABLE}={instance}\0".encode()
    groups = set()
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if marker in b"\0" + proc.joinpath("environ").read_bytes() + b"\0":
                groups.add(os.getpgid(int(proc.name)))
        except (OSError, ValueError):
            continue
    return groups


class JobStore:
    """One job's directory: its metadata under a lock, its log, its paths."""

    def __init__(self, directory: Path):
        self.dir = directory
        self.meta_file = directory / "job.json"
        self.log_file = directory / "log.txt"
        self.instance = directory / "instance"
        self.results_dir = self.instance / "model"
        self.failure_file = self.instance / "output" / "failure"
        self.checkpoints = directory / "checkpoints"
        self.source_archive = directory / "script" / "source.tar.gz"
        self.output_archive = directory / "data" / "output" / "model.tar.gz"

    @contextmanager
    def locked(self) -> Iterator[None]:
        with open(self.dir / ".lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def read(self) -> dict[str, Any]:
        return json.loads(self.meta_file.read_text())

    def write(self, meta: dict[str, Any]) -> None:
        tmp = self.meta_file.with_name(f".job.json.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(meta, indent=1))
        os.replace(tmp, self.meta_file)

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
        self.root = Path(root) if root else default_root()

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
        index = self.root / "arns" / job_arn[len(ARN_PREFIX):]
        try:
            return JobStore(self.root / index.read_text())
        except (FileNotFoundError, ValueError):
            raise JobNotFoundError(f"No job {job_arn} under {self.root} (is {HOME_VARIABLE} the same?).") from None

    # -- JobBackend ------------------------------------------------------------------------------

    def create_job(
        self, spec: JobSpec, client_token: str | None = None, initial_checkpoints: Path | None = None
    ) -> str:
        """Creates and starts a job; `initial_checkpoints` (a directory) are in its checkpoint
        directory before it starts, as `copy_checkpoints_from_job`'s are."""
        self._reap()
        job_id = uuid.uuid4().hex
        if not client_token:
            return self._create(spec, job_id, initial_checkpoints)
        claim = self.root / "tokens" / hashlib.sha256(client_token.encode()).hexdigest()
        claim.parent.mkdir(parents=True, exist_ok=True)
        while True:
            # The claim names the job before it exists, and appears whole (link is atomic).
            draft = claim.with_name(f".{claim.name}.{job_id}")
            draft.write_text(ARN_PREFIX + job_id)
            try:
                os.link(draft, claim)
                break
            except FileExistsError:
                existing = self._claimed_arn(claim)
                if existing:
                    return existing
            finally:
                draft.unlink(missing_ok=True)
        try:
            return self._create(spec, job_id, initial_checkpoints)
        except BaseException:
            claim.unlink(missing_ok=True)
            raise

    def _claimed_arn(self, claim: Path) -> str | None:
        """The job a claim names, once it exists; None if the claim was abandoned (its submitter died
        before creating the job), which the claim then no longer blocks."""
        deadline = time.monotonic() + ORPHAN_GRACE_SECONDS
        while True:
            try:
                arn = claim.read_text().strip()
                age = time.time() - claim.stat().st_mtime
            except FileNotFoundError:
                return None  # its submission failed and withdrew the claim
            if (self.root / "arns" / arn[len(ARN_PREFIX):]).exists():
                return arn
            if age > ORPHAN_GRACE_SECONDS * 3 or time.monotonic() > deadline:
                if age > ORPHAN_GRACE_SECONDS * 3:
                    claim.unlink(missing_ok=True)
                    return None
                raise SubmissionInProgress(f"A submission with this client token is still creating {arn}; try again.")
            time.sleep(0.02)

    def _create(self, spec: JobSpec, job_id: str, initial_checkpoints: Path | None = None) -> str:
        arn = ARN_PREFIX + job_id
        stamp = int(time.time() * 1000)
        while True:
            directory = self.root / "jobs" / spec.job_name / str(stamp)
            try:
                directory.mkdir(parents=True)
                break
            except FileExistsError:
                stamp += 1
        job = JobStore(directory)
        if spec.source_module.name.endswith(".tar.gz"):
            job.source_archive.parent.mkdir(parents=True)
            shutil.copyfile(spec.source_module, job.source_archive)
        else:
            pack_source(spec.source_module, job.source_archive)
        channels = self._stage_input_data(spec, directory / "data")
        job.checkpoints.mkdir()
        if spec.copy_checkpoints_from_job:
            earlier = self.store(spec.copy_checkpoints_from_job)
            shutil.copytree(earlier.checkpoints, job.checkpoints, dirs_exist_ok=True)
        if initial_checkpoints is not None and initial_checkpoints.is_dir():
            shutil.copytree(initial_checkpoints, job.checkpoints, dirs_exist_ok=True)
        config = job.instance / "input" / "config" / "hyperparameters.json"
        config.parent.mkdir(parents=True)
        config.write_text(json.dumps(spec.hyperparameters))
        job.results_dir.mkdir()
        job.log_file.touch()
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
            "inputDataConfig": channels,
            "instanceConfig": vars(spec.instance_config),
            "outputDataConfig": {"s3Path": str(directory / "data")},
            "checkpointConfig": {"localPath": str(job.checkpoints), "s3Uri": str(job.checkpoints)},
            "stoppingCondition": vars(spec.stopping_condition),
            "deviceConfig": {"device": spec.device},
            "hyperParameters": spec.hyperparameters,
            "tags": spec.tags,
            "events": [],
            "_engine": {"jobToken": secrets.token_hex(32), "queueTicket": None},
        }
        if spec.reservation_arn:
            meta["associations"] = [{"arn": spec.reservation_arn, "type": "RESERVATION_TIME_WINDOW_ARN"}]
        ticket = None
        if is_qpu(spec.device):
            ticket = self.root / "queues" / _slug(spec.device) / f"{time.time_ns():020d}-{job_id}"
            meta["_engine"]["queueTicket"] = str(ticket)
            _add_event(meta, "WAITING_FOR_PRIORITY", f"Waiting for {spec.device}, which runs one job at a time.")
        else:
            _add_event(meta, "QUEUED_FOR_EXECUTION")
        job.write(meta)
        if ticket is not None:  # after job.json: whoever reads the ticket finds the job
            ticket.parent.mkdir(parents=True, exist_ok=True)
            ticket.write_text(str(directory.relative_to(self.root)))
        index = self.root / "arns" / job_id
        index.parent.mkdir(parents=True, exist_ok=True)
        index.write_text(str(directory.relative_to(self.root)))
        with open(directory / "supervisor.log", "ab") as supervisor_log:
            process = subprocess.Popen(
                [sys.executable, "-m", "prefect_braket.local_engine", str(directory)],
                stdin=subprocess.DEVNULL,
                stdout=supervisor_log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        _spawned.append(process)
        return arn

    @staticmethod
    def _stage_input_data(spec: JobSpec, data_dir: Path) -> list[dict[str, Any]]:
        channels = []
        for channel, location in spec.input_data.items():
            if str(location).startswith("s3://"):
                raise ValueError(
                    f"Input channel {channel!r} is in S3 ({location}); the embedded engine takes local paths."
                )
            # As Braket's container sees it: a file inside the channel, or a directory's contents.
            source = Path(location)
            channel_dir = data_dir / channel
            if source.is_dir():
                shutil.copytree(source, channel_dir)
            else:
                channel_dir.mkdir(parents=True)
                shutil.copy2(source, channel_dir / source.name)
            channels.append({"channelName": channel, "dataSource": {"s3DataSource": {"s3Uri": str(channel_dir)}}})
        return channels

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
        """Ends the record of a job whose supervisor is gone (killed, or the machine restarted)."""
        # The supervisor may be starting (no pid yet: a loaded machine can take seconds) or have
        # just exited; give it time before calling the job lost.
        deadline = time.monotonic() + ORPHAN_GRACE_SECONDS
        while time.monotonic() < deadline:
            meta = job.read()
            if meta["status"] in TERMINAL_STATES or _pid_alive(meta["_engine"].get("supervisorPid"), str(job.dir)):
                return meta
            time.sleep(0.05)

        def settle(meta: dict[str, Any]) -> None:
            if meta["status"] in TERMINAL_STATES:
                return
            for group in _job_process_groups(job.instance, meta["_engine"].get("processGroup")):
                _kill_group(group, grace=0.5)
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
        # A QPU's tickets are in submission order; the jobs ahead hold or wait for the device.
        ticket = meta["_engine"].get("queueTicket")
        ahead = 0
        if ticket:
            name = Path(ticket).name
            ahead = sum(1 for t in Path(ticket).parent.iterdir() if t.name < name and not t.name.startswith("."))
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
        job = self.store(job_arn)
        offset = int(cursor or 0)
        with open(job.log_file, "rb") as f:
            f.seek(offset)
            data = f.read()
        end = data.rfind(b"\n") + 1
        lines = data[:end].decode(errors="replace").splitlines()
        return LogChunk(lines=lines, cursor=offset + end)

    def download_output(self, job_arn: str, extract_to: Path) -> Path:
        job = self.store(job_arn)
        if not job.output_archive.exists():
            status = job.read()["status"]
            raise FileNotFoundError(f"Job {job_arn} has no model.tar.gz yet (status {status}).")
        return safe_extract(job.output_archive, Path(extract_to))

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
        for group in _job_process_groups(job.instance, job.read()["_engine"].get("processGroup")):
            try:
                os.killpg(group, signal.SIGKILL)
            except ProcessLookupError:
                pass

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
    def __init__(self, directory: Path):
        self.job = JobStore(directory)
        self.root = directory.parents[2]
        self.cancel_requested = False
        signal.signal(signal.SIGTERM, self._on_sigterm)

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        self.cancel_requested = True

    def run(self) -> None:
        meta = self.job.update(lambda m: m["_engine"].update(supervisorPid=os.getpid()))
        if meta["status"] in TERMINAL_STATES:  # settled as lost before this process got going
            _release_ticket(meta)
            return
        try:
            if meta["_engine"].get("queueTicket") and not self._wait_for_device(meta):
                self._finish("CANCELLED", None, "CANCELLED")
                return
            self._start_and_watch(meta)
        except BaseException as error:  # nothing may leave a job unfinished on disk
            self._finish("FAILED", f"The engine failed to run the job: {type(error).__name__}: {error}", "FAILED")
            raise

    def _wait_for_device(self, meta: dict[str, Any]) -> bool:
        ticket = Path(meta["_engine"]["queueTicket"])
        while not self.cancel_requested:
            if self.job.read()["status"] == "CANCELLING":
                return False
            ahead = [t for t in sorted(ticket.parent.iterdir()) if t.name < ticket.name and not t.name.startswith(".")]
            if not ahead:
                return True
            head = ahead[0]
            try:
                holder = JobStore(self.root / head.read_text())
                holder_meta = holder.read()
                pid = holder_meta["_engine"].get("supervisorPid")
                age = (datetime.now(timezone.utc) - datetime.fromisoformat(holder_meta["createdAt"])).total_seconds()
                stale = holder_meta["status"] in TERMINAL_STATES or (
                    not _pid_alive(pid, str(holder.dir)) if pid is not None else age > ORPHAN_GRACE_SECONDS * 3
                )
            except (FileNotFoundError, ValueError):
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
            process = subprocess.Popen(
                [sys.executable, "-m", "prefect_braket.container"],
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
            if self.cancel_requested or self.job.read()["status"] == "CANCELLING":
                _kill_group(process.pid, leader=process)
                process.wait()
                self._finish("CANCELLED", None, "CANCELLED")
                return
            if time.monotonic() > deadline:
                _kill_group(process.pid, leader=process)
                process.wait()
                self._finish(
                    "FAILED", f"The job exceeded its maximum runtime of {limit} seconds.", "MAX_RUNTIME_EXCEEDED"
                )
                return
            try:
                code = process.wait(timeout=0.05)
                break
            except subprocess.TimeoutExpired:
                continue
        # A container ends everything it started; so does a local job.
        _kill_group(process.pid, grace=0.2, leader=process)
        if code == 0 and not self.job.failure_file.exists():
            self._finish("COMPLETED", None, "COMPLETED")
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
        self._finish("FAILED", reason[:1024], "FAILED")

    def _finish(self, status: str, reason: str | None, event: str) -> None:
        job = self.job
        self.job.update(lambda m: _add_event(m, "UPLOADING_RESULTS"))
        try:
            pack_directory(job.results_dir, job.output_archive)
        except OSError as error:
            reason = (reason + "; " if reason else "") + f"packing results failed: {error}"
            status, event = "FAILED", "FAILED"

        def finish(meta: dict[str, Any]) -> None:
            meta["status"] = status
            if reason:
                meta["failureReason"] = reason
            meta["endedAt"] = _now()
            if "startedAt" in meta:
                started = datetime.fromisoformat(meta["startedAt"])
                meta["billableDuration"] = int((datetime.now(timezone.utc) - started).total_seconds() * 1000)
            _add_event(meta, event, reason or "")
            _release_ticket(meta)

        self.job.update(finish)


if __name__ == "__main__":
    _Supervisor(Path(sys.argv[1])).run()
