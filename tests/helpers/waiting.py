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


def job_count(engine) -> int:
    arns = engine.root / "arns"
    return len(list(arns.iterdir())) if arns.exists() else 0
