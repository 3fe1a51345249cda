"""A job's processes: finding every one of them, however it detached, and ending them all.

A job's processes carry its marker in their environment (`INSTANCE_VARIABLE`, the job's instance
directory) and descend from its supervisor, which is the subreaper of whatever they orphan
(`become_subreaper`). One scan of /proc finds them by either (`job_processes`); `end_processes`
signals what it finds until nothing is left, since a job can start processes while it is being
ended. A recorded process number alone may be stale: after a restart it can belong to somebody
else's process, so a pid is trusted only while its command line names the job (`pid_alive`).
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

INSTANCE_VARIABLE = "PREFECT_BRAKET_INSTANCE_DIR"  # in a job's environment: its instance directory
SOURCE_VARIABLE = "PREFECT_BRAKET_SOURCE_ARCHIVE"  # in a job's environment: its source archive, on disk
ENGINE_VARIABLES = (INSTANCE_VARIABLE, SOURCE_VARIABLE)  # the engine's own: what finds and boots the job
KILL_TIMEOUT_SECONDS = 10.0  # a process stuck in the kernel outlives SIGKILL; the job ends regardless
PR_SET_CHILD_SUBREAPER = 36  # linux/prctl.h


def pid_alive(pid: int | None, marker: str) -> bool:
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


def job_processes(instance: Path, recorded: int | None = None, supervisor: int | None = None) -> set[int]:
    """The live processes of the job with this instance directory, from one scan of /proc: those
    whose environment carries the job's marker, and every descendant of its `supervisor`.

    A process can leave its group and its session and double-fork away from its parent, but it
    keeps its environment; one that also execs with another environment is still a descendant of
    the supervisor, the subreaper of whatever the job orphans (once the supervisor is gone, only
    the marker finds it). Zombies are left out: they have ended, and are gone once reaped.
    Without /proc, the `recorded` process group, as the negative number `os.kill` takes for one.
    """
    if not Path("/proc").exists():
        return _recorded_group(recorded)
    parents, found = _scan_proc(f"\0{INSTANCE_VARIABLE}={instance}\0".encode())
    if supervisor is not None:
        found |= {pid for pid in parents if _descends_from(pid, supervisor, parents)}
    found.discard(os.getpid())
    return found


def _recorded_group(group: int | None) -> set[int]:
    if group is None:
        return set()
    try:
        os.kill(-group, 0)
        return {-group}
    except OSError:
        return set()


def _scan_proc(marker: bytes) -> tuple[dict[int, int], set[int]]:
    """Every live process's parent, and the processes whose environment holds `marker`."""
    parents: dict[int, int] = {}
    marked = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            state, ppid = proc.joinpath("stat").read_text().rsplit(")", 1)[1].split()[:2]
            if state in ("Z", "X"):
                continue
            parents[int(proc.name)] = int(ppid)
            if marker in b"\0" + proc.joinpath("environ").read_bytes() + b"\0":
                marked.add(int(proc.name))
        except (OSError, ValueError):  # ended during the scan, or not ours to read
            continue
    return parents, marked


def _descends_from(pid: int, ancestor: int, parents: dict[int, int]) -> bool:
    parent = parents[pid]
    for _ in range(len(parents)):  # bounded: pids reused during the scan could make a loop
        if parent == ancestor or parent not in parents:
            break
        parent = parents[parent]
    return parent == ancestor


def signal_processes(pids: set[int], signum: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, signum)
        except (ProcessLookupError, PermissionError):
            pass


def end_processes(
    instance: Path, grace: float, recorded: int | None = None, supervisor: int | None = None,
    reap: Callable[[], None] = lambda: None,
) -> None:
    """Ends every process of a job (`job_processes`): SIGTERM, then SIGKILL for what is left after
    `grace` (at once when it is 0), again until nothing is left, since a job can start processes
    while it is being ended. `reap` collects the caller's ended children, which would otherwise
    stay zombies. SIGKILLs stop after `KILL_TIMEOUT_SECONDS`, for a process stuck in the kernel."""

    def remaining() -> set[int]:
        reap()
        return job_processes(instance, recorded, supervisor)

    targets = remaining()
    if targets and grace > 0:
        signal_processes(targets, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while targets and time.monotonic() < deadline:
            time.sleep(0.02)
            targets = remaining()
    deadline = time.monotonic() + KILL_TIMEOUT_SECONDS
    while targets and time.monotonic() < deadline:
        signal_processes(targets, signal.SIGKILL)
        time.sleep(0.01)
        targets = remaining()
    reap()


def become_subreaper() -> None:
    """Makes this process, in place of init, the parent of whatever its descendants orphan (Linux):
    a job's double-forked or re-sessioned processes stay among its supervisor's descendants, to be
    reaped and ended with the job. Elsewhere the job's marker alone finds them."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def reap_children(own: subprocess.Popen | None) -> None:
    """Collects this process's ended children: `own` (whose exit code Popen keeps, so it is polled,
    not waited for) and those reparented to this subreaper, which would stay zombies."""
    if not hasattr(os, "waitid"):  # nor a subreaper: the job's own process is the only child
        if own is not None:
            own.poll()
        return
    while True:
        try:
            ended = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return
        if ended is None:
            return
        if own is not None and ended.si_pid == own.pid:
            own.poll()
        else:
            os.waitpid(ended.si_pid, 0)
