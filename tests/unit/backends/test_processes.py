"""Finding a job's processes and ending them all (`backends.local.processes`), with small processes
of the test's own standing in for a job's: marked by the job's instance directory in their
environment, or descended from its supervisor, or neither."""

import os
import signal
import subprocess
import sys
import time

import pytest

from prefect_braket.backends.local import processes
from prefect_braket.backends.local.processes import (
    INSTANCE_VARIABLE,
    _descends_from,
    _recorded_group,
    end_processes,
    job_processes,
    pid_alive,
    signal_processes,
)

SLEEPER = "import time; print('ready', flush=True); time.sleep(120)"
# Ignores SIGTERM, so only SIGKILL ends it; says so once the handler is in place.
STUBBORN = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); "
            "time.sleep(120)")
# Starts a grandchild in a session of its own, prints its pid, and waits.
PARENT = ("import subprocess, sys, time; c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'], "
          "start_new_session=True); print(c.pid, flush=True); time.sleep(120)")


@pytest.fixture
def spawn():
    """Starts a Python child that has printed its first line once returned; every child is ended after."""
    started: list[subprocess.Popen] = []

    def start(code, *args, env=None, **options):
        child = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, text=True,
                                 env={**os.environ, **(env or {})}, **options)
        started.append(child)
        child.first_line = child.stdout.readline().strip()  # it is running its code now
        return child

    yield start
    for child in started:
        if child.poll() is None:
            child.kill()
        child.wait(timeout=10)


def test_pid_alive_trusts_a_pid_only_while_its_command_line_names_the_job(spawn):
    child = spawn(SLEEPER, "job-marker-1", b"\xff-not-utf-8")
    assert pid_alive(child.pid, "job-marker-1")
    assert pid_alive(child.pid, "-not-utf-8")  # a command line that is not UTF-8 is still read
    assert not pid_alive(child.pid, "job-marker-2")  # a reused pid: somebody else's process
    assert child.poll() is None  # asking sent it no signal
    assert not pid_alive(None, "job-marker-1") and not pid_alive(0, "job-marker-1")
    child.kill()
    wait_for_zombie(child.pid)
    assert not pid_alive(child.pid, "job-marker-1")  # ended, not yet reaped
    child.wait()
    assert not pid_alive(child.pid, "job-marker-1")  # gone


def wait_for_zombie(pid, timeout=60.0):
    """Until an ending process is a zombie or gone: a killed one (SIGKILL is delivered
    asynchronously), or one that exits by itself."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                return
        except OSError:
            return
        time.sleep(0.005)
    raise AssertionError(f"{pid} did not end within {timeout} s")


def test_job_processes_finds_the_marked_and_the_supervisors_descendants(spawn, tmp_path):
    instance = tmp_path / "instance"
    marked = spawn(SLEEPER, env={INSTANCE_VARIABLE: str(instance)})
    other_job = spawn(SLEEPER, env={INSTANCE_VARIABLE: str(tmp_path / "other")})
    # A "supervisor" without the marker, whose child left its session: found as a descendant.
    supervisor = spawn(PARENT)
    grandchild = int(supervisor.first_line)
    assert job_processes(instance) == {marked.pid}
    assert job_processes(instance, supervisor=supervisor.pid) == {marked.pid, grandchild}
    assert other_job.pid not in job_processes(instance, supervisor=supervisor.pid)
    os.kill(grandchild, signal.SIGKILL)
    marked.kill()
    wait_for_zombie(marked.pid)
    assert job_processes(instance, supervisor=supervisor.pid) - {grandchild} == set()  # zombies are left out


def test_job_processes_never_counts_the_caller(tmp_path, monkeypatch):
    instance = tmp_path / "instance"
    # The caller itself carries the marker (a supervisor does): it is not among what it ends.
    monkeypatch.setattr(processes, "_scan_proc", lambda marker: ({os.getpid(): 1}, {os.getpid()}))
    assert job_processes(instance) == set()


def test_descends_from_follows_parents_and_stops_on_a_loop():
    parents = {10: 1, 11: 10, 12: 11, 20: 1, 30: 31, 31: 30}
    assert _descends_from(12, 10, parents) and _descends_from(11, 10, parents)
    assert not _descends_from(20, 10, parents)
    assert not _descends_from(30, 10, parents)  # pids reused during the scan made a loop
    assert _descends_from(10, 1, parents)
    assert not _descends_from(12, 99, parents)


def test_without_proc_the_recorded_process_group_stands_in(spawn, monkeypatch, tmp_path):
    leader = spawn(SLEEPER, start_new_session=True)  # its own group: group id == pid
    assert _recorded_group(leader.pid) == {-leader.pid}
    assert leader.poll() is None  # asking sent it no signal
    assert _recorded_group(None) == set()
    monkeypatch.setattr(processes, "Path", lambda path: tmp_path / "no-proc" if path == "/proc" else path)
    assert job_processes(tmp_path / "instance", recorded=leader.pid) == {-leader.pid}
    leader.kill()
    leader.wait()
    assert _recorded_group(leader.pid) == set()


def test_signal_processes_skips_processes_already_gone(spawn):
    gone = spawn(SLEEPER)
    gone.kill()
    gone.wait()
    live = spawn(SLEEPER)
    signal_processes({gone.pid, live.pid}, signal.SIGTERM)
    assert live.wait(timeout=10) == -signal.SIGTERM


def test_end_processes_terminates_then_kills_what_ignores_sigterm(spawn, tmp_path):
    instance = tmp_path / "instance"
    polite = spawn(SLEEPER, env={INSTANCE_VARIABLE: str(instance)})
    stubborn = spawn(STUBBORN, env={INSTANCE_VARIABLE: str(instance)})
    bystander = spawn(SLEEPER)
    reaped: list[int] = []

    def reap():
        reaped.append(1)
        for child in (polite, stubborn):
            child.poll()

    end_processes(instance, grace=0.3, reap=reap)
    assert polite.wait(timeout=10) == -signal.SIGTERM  # asked first
    assert stubborn.wait(timeout=10) == -signal.SIGKILL  # then made to
    assert bystander.poll() is None  # not the job's
    assert job_processes(instance) == set()
    assert len(reaped) >= 2  # before looking, and once more at the end


def test_end_processes_with_no_grace_kills_at_once(spawn, tmp_path):
    instance = tmp_path / "instance"
    child = spawn(SLEEPER, env={INSTANCE_VARIABLE: str(instance)})
    end_processes(instance, grace=0, reap=child.poll)
    assert child.wait(timeout=10) == -signal.SIGKILL  # no SIGTERM first


def test_end_processes_with_nothing_to_end_returns_at_once(tmp_path):
    calls = []
    end_processes(tmp_path / "nothing", grace=5.0, reap=lambda: calls.append(1))
    assert calls == [1, 1]


def test_a_recorded_group_outlives_its_leader(spawn):
    # The leader starts a child in its group, then exits: the group is still there to be ended.
    code = ("import subprocess, sys; c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); "
            "print(c.pid, flush=True)")
    leader = spawn(code, start_new_session=True)
    member = int(leader.first_line)
    leader.wait(timeout=30)
    try:
        assert _recorded_group(leader.pid) == {-leader.pid}
    finally:
        os.kill(member, signal.SIGKILL)


# Prints the number of every signal it is sent (the catchable ones a mistake could send), one a line.
WITNESS = ("import signal, sys, time\n"
           "def seen(number, frame): print(number, flush=True)\n"
           "for name in ('SIGHUP', 'SIGINT', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2', 'SIGTERM', 'SIGALRM', 'SIGCONT'):\n"
           "    signal.signal(getattr(signal, name), seen)\n"
           "print('ready', flush=True)\n"
           "while True: time.sleep(1)\n")


def signals_seen_before(child, sentinel=signal.SIGUSR2):
    """The signals `child` (a WITNESS) was sent, in order, up to the `sentinel` this sends it now:
    pending signals are handled lowest number first, so one sent earlier is printed first."""
    os.kill(child.pid, sentinel)
    seen = []
    while (line := child.stdout.readline().strip()) != str(int(sentinel)):
        seen.append(int(line))
    return seen


def test_asking_whether_a_process_or_a_group_is_alive_sends_it_no_signal(spawn):
    child = spawn(WITNESS, "job-marker-3", start_new_session=True)
    assert pid_alive(child.pid, "job-marker-3")
    assert _recorded_group(child.pid) == {-child.pid}
    assert signals_seen_before(child) == []


def test_a_zombie_under_the_supervisor_is_not_the_jobs_and_the_scan_goes_on_past_it(spawn, tmp_path):
    instance = tmp_path / "instance"
    # The supervisor's child exits and is never reaped: a zombie among its descendants.
    supervisor = spawn("import subprocess, sys, time; c = subprocess.Popen([sys.executable, '-c', 'pass']); "
                       "print(c.pid, flush=True); time.sleep(120)")
    zombie = int(supervisor.first_line)
    wait_for_zombie(zombie)
    later = spawn(SLEEPER, env={INSTANCE_VARIABLE: str(instance)})  # a higher pid than the zombie's
    assert job_processes(instance, supervisor=supervisor.pid) == {later.pid}


def test_a_process_whose_name_holds_a_parenthesis_is_read_right(spawn, tmp_path):
    # /proc/<pid>/stat puts the name in parentheses, and a name may hold ") Z (": only the last ")" ends it.
    program = tmp_path / "job) Z 1 (x"
    program.symlink_to(sys.executable)
    instance = tmp_path / "instance"
    child = subprocess.Popen([str(program), "-c", SLEEPER, "job-marker-4"], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, INSTANCE_VARIABLE: str(instance)})
    try:
        assert child.stdout.readline().strip() == "ready"
        assert open(f"/proc/{child.pid}/comm").read().startswith("job) Z 1 (x")
        assert pid_alive(child.pid, "job-marker-4")
        assert job_processes(instance) == {child.pid}
    finally:
        child.kill()
        child.wait(timeout=10)


def test_the_marker_is_found_as_the_first_and_the_last_variable_of_an_environment(tmp_path):
    instance = tmp_path / "instance"
    child = subprocess.Popen([sys.executable, "-c", SLEEPER], stdout=subprocess.PIPE, text=True,
                             env={INSTANCE_VARIABLE: str(instance)})  # its only variable
    try:
        assert child.stdout.readline().strip() == "ready"
        assert job_processes(instance) == {child.pid}
    finally:
        child.kill()
        child.wait(timeout=10)


def test_end_processes_ends_the_supervisors_descendants_without_the_marker(spawn, tmp_path):
    supervisor = spawn(PARENT)  # its child left the session and carries no marker
    grandchild = int(supervisor.first_line)
    end_processes(tmp_path / "instance", grace=0.5, supervisor=supervisor.pid)
    wait_for_zombie(grandchild)  # ended: a zombie, as its parent does not reap it
    assert not pid_alive(grandchild, "time.sleep")
    assert supervisor.poll() is None  # the supervisor is the caller: it ends its job, not itself


def test_end_processes_gives_a_process_its_grace_to_finish_on_sigterm(spawn, tmp_path):
    instance = tmp_path / "instance"
    done = tmp_path / "cleaned-up"
    # On SIGTERM it takes 0.3 s to clean up, then exits by itself.
    code = ("import signal, sys, time\n"
            "def stop(number, frame):\n"
            "    time.sleep(0.3)\n"
            f"    open({str(done)!r}, 'w').write('done')\n"
            "    sys.exit(0)\n"
            "signal.signal(signal.SIGTERM, stop)\n"
            "print('ready', flush=True)\n"
            "time.sleep(120)\n")
    child = spawn(code, env={INSTANCE_VARIABLE: str(instance)})
    end_processes(instance, grace=10.0, reap=child.poll)
    assert child.wait(timeout=10) == 0 and done.read_text() == "done"
