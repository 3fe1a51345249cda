"""Waiting in tests: for a condition (never a bare sleep), for a process to be gone."""

import os
import time
from pathlib import Path


def wait_for(predicate, timeout=10.0, interval=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z")


def processes_with_environment(variable: str, value: str) -> set[int]:
    """Live (not zombie) processes whose environment has `variable=value`, from /proc: a job's
    processes carry its instance directory there, however they detached."""
    wanted = f"{variable}={value}".encode()
    found = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            environment = (proc / "environ").read_bytes().split(b"\0")
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if wanted in environment and pid_alive(int(proc.name)):
            found.add(int(proc.name))
    return found


def job_processes_left(engine, arn) -> set[int]:
    """The live processes of an embedded-engine job (its instance directory in their environment)."""
    return processes_with_environment("PREFECT_BRAKET_INSTANCE_DIR", str(engine.store(arn).instance))


def job_count(engine) -> int:
    arns = engine.root / "arns"
    return len(list(arns.iterdir())) if arns.exists() else 0
