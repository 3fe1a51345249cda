"""Imported by every Python process of a `bench/mutation_score.py` run (this directory is on its
PYTHONPATH): no process of the run signals the run's own processes.

A mutant of the code that finds a job's processes can take every process it sees for the job's
and signal them all. The run is in a PID namespace of its own, so it sees only the run's; this
keeps it from mutmut and the namespace's init, whose death would end the run with no report.
"""

import os

_kill, _killpg = os.kill, os.killpg


def _ancestors() -> set[int]:
    pids, pid = set(), os.getpid()
    while pid > 0:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                pid = int(stat.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
        pids.add(pid)
    return pids


def _their_groups(ancestors: set[int]) -> set[int]:
    groups = {0}  # 0: the caller's own group, which it shares with mutmut
    for pid in ancestors:
        try:
            groups.add(os.getpgid(pid))
        except OSError:
            pass
    return groups


def _refuse(target: object) -> None:
    raise PermissionError(1, f"the mutation run does not signal {target}: it is the run itself")


def kill(pid: int, signum: int) -> None:
    if signum != 0:
        ancestors = _ancestors()
        if pid == -1 or pid in ancestors or (pid <= 0 and -pid in _their_groups(ancestors)):
            _refuse(pid)
    _kill(pid, signum)


def killpg(group: int, signum: int) -> None:
    if signum != 0 and group in _their_groups(_ancestors()):
        _refuse(f"process group {group}")
    _killpg(group, signum)


os.kill, os.killpg = kill, killpg
