"""The embedded engine against hostile jobs and damaged state: no process of a job outlives it, a
damaged file is named with its fix, the home is its owner's alone, and a refused or failed
submission leaves nothing behind."""

import hashlib
import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from helpers.waiting import wait_for
from prefect_braket import HybridJob, JobSpec, StoppingCondition, hybrid_job
from prefect_braket.backends.local.queue import queue_name as _slug
from prefect_braket.core.errors import JobNotFoundError, JobStateError
from prefect_braket.core.states import TERMINAL_STATES

QPU = "arn:aws:braket:us-east-1::device/qpu/ionq/Forte-1"

# A process a job leaves behind. "session": its own session and group, with the job's environment;
# asked to stop, it starts another in its place. "daemon": the classic double fork (a new session,
# no parent left); the job starts it with an empty environment, so no marker of the job either.
# Each records "pid starttime" (the pair names one process, even once the pid is reused).
LINGER = textwrap.dedent(
    """
    import os, signal, subprocess, sys, time

    def record(pid):
        start = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[19]
        with open(sys.argv[1], "a") as f:
            f.write(f"{pid} {start}\\n")

    def respawn(signum, frame):
        record(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True).pid)

    if sys.argv[2] == "daemon":
        if os.fork():
            os._exit(0)
        os.setsid()
        if os.fork():
            os._exit(0)
    else:
        signal.signal(signal.SIGTERM, respawn)
    record(os.getpid())
    while True:
        time.sleep(600)
    """
)


def _recorded(path: str) -> list[tuple[int, str]]:
    text = Path(path).read_text() if Path(path).exists() else ""
    return [(int(pid), start) for pid, start in (line.split() for line in text.split("\n")[:-1])]


def _escape(record: str, daemons: bool, seconds: float):
    subprocess.Popen([sys.executable, "-c", LINGER, record, "session"], start_new_session=True)
    if daemons:
        subprocess.Popen([sys.executable, "-c", LINGER, record, "daemon"], env={})
    while len(_recorded(record)) < 1 + daemons:
        time.sleep(0.02)
    time.sleep(seconds)
    return {"ok": True}


def _gone(pid: int, start: str) -> bool:
    """Whether the process is gone: not there, or its number is another's now. A zombie is not gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19] != start
    except FileNotFoundError:
        return True


def _ended(engine, arn: str, timeout: float = 30.0) -> dict:
    return wait_for(lambda: (meta := engine.get_job(arn))["status"] in TERMINAL_STATES and meta, timeout=timeout)


def _forget(engine, arn: str) -> None:
    """Drops a deliberately damaged job's index, so that the fixture's clean-up does not read it."""
    (engine.root / "arns" / arn.rsplit("/", 1)[1]).unlink()


@pytest.mark.parametrize("ending", ["completion", "cancel", "max_runtime", "lost_supervisor", "damaged_record"])
def test_no_process_of_a_job_outlives_it(engine, tmp_path, ending):
    record = str(tmp_path / "processes.txt")
    # Once its supervisor is gone, a process is found by the job's marker in its environment: one
    # that dropped its environment as well is out of reach, so that case starts none.
    daemons = ending != "lost_supervisor"
    limit = StoppingCondition(maxRuntimeInSeconds=5) if ending == "max_runtime" else None
    job = hybrid_job(device=QPU, local=True, stopping_condition=limit)(_escape)(
        record, daemons, 0.0 if ending == "completion" else 60.0)
    wait_for(lambda: len(_recorded(record)) == 1 + daemons, timeout=60)

    if ending == "cancel":
        job.cancel()
    elif ending == "lost_supervisor":
        os.kill(engine.process_ids(job.arn)["supervisor"], signal.SIGKILL)
    elif ending == "damaged_record":
        engine.job_directory(job.arn).joinpath("job.json").write_text('{"jobArn": "local:job/')
    if ending == "damaged_record":
        with pytest.raises(JobStateError, match="job.json is damaged"):
            engine.get_job(job.arn)
        _forget(engine, job.arn)
    else:
        meta = _ended(engine, job.arn)
        assert meta["status"] == {"completion": "COMPLETED", "cancel": "CANCELLED"}.get(ending, "FAILED")
        if ending == "max_runtime":
            assert "MAX_RUNTIME_EXCEEDED" in [e["eventType"] for e in meta["events"]]
        if ending == "lost_supervisor":
            assert meta["failureReason"].startswith("InternalServerError: The job was lost")

    # A process asked to stop records the one it starts in its place before it can be gone itself:
    # the record is read until it names no process not yet seen gone.
    checked: set[tuple[int, str]] = set()
    while new := set(_recorded(record)) - checked:
        for pid, start in new:
            wait_for(lambda pid=pid, start=start: _gone(pid, start), timeout=15)
        checked |= new
    # The device is free again, whatever happened to the job's record.
    wait_for(lambda: not any((engine.root / "queues" / _slug(QPU)).iterdir()), timeout=15)


# -- damaged state ---------------------------------------------------------------------------------


def _finished_jobs(engine, tmp_path, count: int) -> list[str]:
    (tmp_path / "quick.py").write_text("def main():\n    pass\n")
    spec = JobSpec(job_name="quick", device="local:braket/braket_sv", source_module=tmp_path / "quick.py",
                   entry_point="quick:main")
    arns = [engine.create_job(spec) for _ in range(count)]
    for arn in arns:
        assert _ended(engine, arn)["status"] == "COMPLETED"
    return arns


def _readers(engine, arn):
    """Every way a client reads a job: each must fail the same way on a damaged record."""
    return [
        lambda: engine.get_job(arn),
        lambda: HybridJob.attach(arn, engine),
        lambda: HybridJob(arn, engine).state(),
        lambda: HybridJob(arn, engine).result(poll_interval_seconds=0.1),
        lambda: engine.cancel_job(arn),
    ]


def test_a_damaged_job_record_names_its_file_what_is_wrong_and_the_fix(engine, tmp_path):
    (arn,) = _finished_jobs(engine, tmp_path, 1)
    record = engine.job_directory(arn) / "job.json"
    good = record.read_text()

    def changed(change):
        meta = json.loads(good)
        change(meta)
        return json.dumps(meta).encode()

    damages = [
        (good[: len(good) // 2].encode(), "it is not JSON"),
        (b"\x89PNG\r\n\x1a\n\x00\xff", "it is not JSON"),
        (b"[1, 2, 3]", r"the record is \[1, 2, 3\], not an object"),
        (changed(lambda m: m.pop("status")), "status is missing"),
        (changed(lambda m: m.update(status=5)), "status is 5, not one of"),
        (changed(lambda m: m.update(createdAt="yesterday")), "createdAt is 'yesterday', not an ISO 8601 time"),
        (changed(lambda m: m.update(events=["x"])), r"events\[0\] is 'x', not an object"),
        (changed(lambda m: m["_engine"].update(supervisorPid="12")), "_engine.supervisorPid is '12', not int"),
        (changed(lambda m: m["_engine"].pop("jobToken")), "_engine.jobToken is missing"),
        (changed(lambda m: m["_engine"].update(queueTicket="/etc/passwd")),
         "_engine.queueTicket '/etc/passwd' is not a ticket"),
    ]
    fix = rf"Remove the job's directory {engine.job_directory(arn)} or restore its job.json; other jobs are unaffected"
    try:
        for damage, problem in damages:
            record.write_bytes(damage)
            message = rf"^The embedded engine's file {record} is damaged: {problem}.*{fix}"
            for read in _readers(engine, arn):
                with pytest.raises(JobStateError, match=message):
                    read()
    finally:
        record.write_text(good)
    assert HybridJob.attach(arn, engine).result() == {}


def test_a_damaged_index_names_itself_and_the_fix(engine, tmp_path):
    first, second = _finished_jobs(engine, tmp_path, 2)
    index = engine.root / "arns" / first.rsplit("/", 1)[1]
    good = index.read_text()
    other = engine.job_directory(second)
    damages = {
        "jobs/quick/1": (JobNotFoundError, rf"{index} names the job directory .*jobs/quick/1, which was removed: "
                                           rf"remove {index} too"),
        "../../../etc": (JobStateError, rf"{index} is damaged: it holds '../../../etc', not a job directory"),
        str(other.relative_to(engine.root)): (
            JobStateError, rf"{index} is damaged: it names {other}, the directory of another job \({second}\)"),
    }
    try:
        for text, (error, message) in damages.items():
            index.write_text(text)
            for read in _readers(engine, first):
                with pytest.raises(error, match=message):
                    read()
    finally:
        index.write_text(good)
    assert engine.get_job(first)["jobArn"] == first


def test_a_damaged_client_token_claim_is_named_not_waited_for(engine, tmp_path):
    (tmp_path / "quick.py").write_text("def main():\n    pass\n")
    spec = JobSpec(job_name="claimed", device="local:braket/braket_sv", source_module=tmp_path / "quick.py",
                   entry_point="quick:main")
    claim = engine.root / "tokens" / hashlib.sha256(b"the-token").hexdigest()
    claim.parent.mkdir(parents=True)
    for damage, problem in (("garbage", "it holds 'garbage', not a job ARN"), ("directory", "it cannot be read")):
        if damage == "garbage":
            claim.write_text("garbage")
        else:
            claim.unlink()
            claim.mkdir()
        started = time.monotonic()
        with pytest.raises(JobStateError, match=rf"{claim} is damaged: {problem}.*Remove it: a submission with this "
                                                "client token then creates its job anew"):
            engine.create_job(spec, client_token="the-token")
        assert time.monotonic() - started < 5
    assert not (engine.root / "jobs").exists()


def test_the_queue_passes_over_damaged_tickets(engine, tmp_path):
    queue = engine.root / "queues" / _slug(QPU)
    queue.mkdir(parents=True)
    ghost = engine.root / "jobs" / "ghost" / "1"
    ghost.mkdir(parents=True)
    ghost.joinpath("job.json").write_text(json.dumps({"jobArn": "local:job/" + "9" * 32, "jobName": "ghost"}))
    garbage, broken, folder = (queue / f"{n:020d}-{c * 32}" for n, c in ((1, "a"), (2, "b"), (3, "c")))
    garbage.write_text("not a job")
    broken.write_text("jobs/ghost/1")
    folder.mkdir()  # named like a ticket, holding no place in the queue

    @hybrid_job(device=QPU, local=True)
    def queued():
        return {"ran": True}

    job = queued()
    assert job.result(poll_interval_seconds=0.1) == {"ran": True}
    log = engine.job_directory(job.arn).joinpath("supervisor.log").read_text()
    assert f"Passing over the queue ticket {garbage}: The embedded engine's file {garbage} is damaged" in log
    assert f"Passing over the queue ticket {broken}: The embedded engine's file {ghost / 'job.json'} is damaged: " \
           "status is missing" in log
    wait_for(lambda: sorted(queue.iterdir()) == [folder])


# -- permissions -----------------------------------------------------------------------------------


def test_the_home_and_everything_in_it_are_the_owners_alone(engine, tmp_path):
    engine.root.mkdir(mode=0o755)
    engine.root.chmod(0o755)  # an existing home, as loose as a umask made it
    source = tmp_path / "algo"
    source.mkdir()
    (source / "run.py").write_text(textwrap.dedent(
        """
        import os
        from pathlib import Path
        from prefect_braket.jobs import get_results_dir, save_job_checkpoint, save_job_result

        def main():
            save_job_checkpoint({"step": 1})
            shared = Path(get_results_dir()) / "shared.txt"
            shared.write_text("x")
            os.chmod(shared, 0o666)  # a job loosening what it writes
            os.mkdir(Path(get_results_dir()) / "plots", 0o777)
            os.chmod(Path(get_results_dir()) / "plots", 0o777)
            save_job_result({"ok": True})
        """
    ))
    (tmp_path / "values.txt").write_text("1,2")
    (tmp_path / "values.txt").chmod(0o644)
    spec = JobSpec(job_name="private", device=QPU, source_module=source, entry_point="algo.run:main",
                   input_data={"values": str(tmp_path / "values.txt")})
    umask = os.umask(0o022)  # the usual umask, whatever this runner's is
    try:
        arn = engine.create_job(spec, client_token="private-token")
    finally:
        os.umask(umask)
    assert HybridJob(arn, engine).result(poll_interval_seconds=0.1) == {"ok": True}
    assert (engine.job_directory(arn) / "checkpoints" / "private.json").exists()
    assert (engine.job_directory(arn) / "instance" / "model" / "shared.txt").exists()
    loose = []
    for path in [engine.root, *engine.root.rglob("*")]:
        mode = path.lstat().st_mode
        if not stat.S_ISLNK(mode) and mode & 0o077:
            loose.append(f"{path.relative_to(engine.root)} {stat.filemode(mode)}")
    assert loose == []
    assert {p.name for p in engine.root.iterdir()} >= {"jobs", "arns", "tokens", "queues"}


# -- refused and failed submissions ----------------------------------------------------------------


@pytest.mark.parametrize("flaw", ["s3 input", "missing input", "missing source", "unknown checkpoint job"])
def test_a_job_the_engine_cannot_take_is_refused_before_anything_is_created(engine, tmp_path, flaw):
    (tmp_path / "algo.py").write_text("def main():\n    pass\n")
    (tmp_path / "values.txt").write_text("1")
    spec = JobSpec(
        job_name="refused", device=QPU, source_module=tmp_path / "algo.py", entry_point="algo:main",
        input_data={"values": "s3://bucket/values.txt" if flaw == "s3 input" else str(tmp_path / "values.txt")},
        copy_checkpoints_from_job="local:job/" + "0" * 32 if flaw == "unknown checkpoint job" else None,
    )
    if flaw == "missing input":
        (tmp_path / "values.txt").unlink()  # gone since the spec was made
    if flaw == "missing source":
        (tmp_path / "algo.py").unlink()
    error, message = {
        "s3 input": (ValueError, "Input channel 'values' is in S3 .* the embedded engine takes local paths"),
        "missing input": (FileNotFoundError, "Input data for channel 'values' not found"),
        "missing source": (FileNotFoundError, "Source module .*algo.py does not exist"),
        "unknown checkpoint job": (JobNotFoundError, "copy_checkpoints_from_job: No job local:job/0+ under"),
    }[flaw]
    with pytest.raises(error, match=message):
        engine.create_job(spec, client_token="refused-token")
    assert not engine.root.exists()  # no directory, no claim, no ticket


@pytest.mark.parametrize("failure", ["source that cannot be packed", "damaged index directory"])
def test_a_creation_that_fails_removes_what_it_made(engine, tmp_path, failure):
    source = tmp_path / "algo"
    source.mkdir()
    (source / "run.py").write_text("def main():\n    pass\n")
    if failure == "source that cannot be packed":  # found only while packing: links are followed
        (source / "data.txt").symlink_to(tmp_path / "nowhere.txt")
    else:  # the last step before the supervisor starts: the job's directory and ticket exist by then
        engine.root.mkdir()
        (engine.root / "arns").write_text("not a directory")
    spec = JobSpec(job_name="half-made", device=QPU, source_module=source, entry_point="algo.run:main")
    error, message = {
        "source that cannot be packed": (FileNotFoundError, "data.txt"),
        "damaged index directory": (JobStateError, rf"{engine.root / 'arns'} is damaged: it is not a directory"),
    }[failure]
    with pytest.raises(error, match=message):
        engine.create_job(spec, client_token="half-made-token")
    files = sorted(str(p.relative_to(engine.root)) for p in engine.root.rglob("*") if not p.is_dir())
    assert files == ([] if failure == "source that cannot be packed" else ["arns"])  # no claim, ticket, index
    assert list((engine.root / "jobs" / "half-made").iterdir()) == []
    if failure == "damaged index directory":
        (engine.root / "arns").unlink()
