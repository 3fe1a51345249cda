"""Spending ledgers (in memory, and a locked file shared by processes) and a hybrid job's own
`max_cost_usd` (`jobs.budget`): what is counted, what is refused, and how a job past its budget stops."""

import json
import os
import pickle
import subprocess
import sys
import threading
from dataclasses import asdict

import pytest

from prefect_braket.jobs import budget as budgets
from prefect_braket.jobs.budget import JOB_BUDGET_VARIABLE, BudgetExceededError, JobBudget, SpendingLedger


def refusal(spent):
    return f"refused at {spent:.2f}"


@pytest.mark.parametrize("where", ["memory", "file"])
def test_a_ledger_counts_reservations_and_settles_them(tmp_path, where):
    ledger = SpendingLedger(tmp_path / "ledger.json" if where == "file" else None)
    assert ledger.spent() == 0.0
    ledger.reserve(0.6, 1.0, refusal)
    ledger.reserve(0.4, 1.0, refusal)  # exactly at the limit is allowed
    with pytest.raises(BudgetExceededError, match="refused at 1.00"):
        ledger.reserve(0.01, 1.0, refusal)
    assert ledger.spent() == pytest.approx(1.0)  # a refusal counts nothing
    ledger.settle(0.6, 0.1)
    assert ledger.spent() == pytest.approx(0.5)
    ledger.reserve(100.0, None, refusal)  # no limit
    assert ledger.spent() == pytest.approx(100.5)
    assert ledger.update(lambda spent: 0.0) == 0.0 and ledger.spent() == 0.0


def test_a_file_ledger_is_shared_by_every_copy_and_holds_its_amount(tmp_path):
    path = tmp_path / "deep" / "deeper" / "ledger.json"  # the directories it needs are made
    first, second = SpendingLedger(path), SpendingLedger(path)
    first.reserve(0.25, None, refusal)
    assert second.spent() == 0.25
    assert json.loads(path.read_text()) == {"spent_usd": 0.25}
    copy = pickle.loads(pickle.dumps(second))  # as a copy in another process has it
    copy.reserve(0.5, 1.0, refusal)
    assert first.spent() == 0.75
    assert repr(first) == f"SpendingLedger({path}, spent_usd=0.7500)"
    assert oct(path.parent.stat().st_mode & 0o777) == oct(0o700)
    lock = path.with_name("ledger.json.lock")  # held by every copy while it reads and writes
    assert oct(lock.stat().st_mode & 0o777) == oct(0o600)


def test_an_in_memory_ledger_travels_with_its_amount():
    ledger = SpendingLedger(spent_usd=0.5)
    copy = pickle.loads(pickle.dumps(ledger))
    copy.reserve(0.25, None, refusal)
    assert copy.spent() == 0.75 and ledger.spent() == 0.5
    assert repr(ledger) == "SpendingLedger(in memory, spent_usd=0.5000)"


def test_reservations_from_many_threads_never_pass_the_limit(tmp_path):
    ledger = SpendingLedger(tmp_path / "ledger.json")
    refused = []

    def spend():
        for _ in range(10):
            try:
                ledger.reserve(0.1, 2.0, refusal)
            except BudgetExceededError:
                refused.append(1)

    threads = [threading.Thread(target=spend) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert ledger.spent() == pytest.approx(2.0) and len(refused) == 20


@pytest.mark.parametrize("text", ["not json", '{"spent": 1}', '{"spent_usd": "1"}', '{"spent_usd": true}',
                                  '{"spent_usd": NaN}', '{"spent_usd": Infinity}', "[1]"])
def test_a_damaged_ledger_is_an_error_never_zero(tmp_path, text):
    path = tmp_path / "ledger.json"
    path.write_text(text)
    with pytest.raises(RuntimeError, match=rf"The spending ledger {path} is damaged .*remove it to count this budget"):
        SpendingLedger(path).spent()
    with pytest.raises(RuntimeError, match="is damaged"):
        SpendingLedger(path).reserve(0.1, None, refusal)
    assert path.read_text() == text  # left as it was, for its owner to look at


def test_an_unchanged_file_ledger_is_not_rewritten(tmp_path):
    path = tmp_path / "ledger.json"
    ledger = SpendingLedger(path)
    ledger.spent()
    assert not path.exists()  # reading writes nothing
    ledger.reserve(0.5, None, refusal)
    stamp = path.stat().st_mtime_ns
    ledger.settle(0.5, 0.5)
    assert path.stat().st_mtime_ns == stamp


def job_budget(tmp_path, max_cost_usd, per_hour=0.0, started=None):
    import time

    return JobBudget(max_cost_usd, per_hour, time.time() if started is None else started, str(tmp_path / "tasks.json"))


def test_a_job_budget_counts_instance_time_against_its_tasks(tmp_path, monkeypatch):
    now = 10_000.0
    monkeypatch.setattr(budgets.time, "time", lambda: now)
    budget = job_budget(tmp_path, 1.0, per_hour=3.6, started=now - 360)  # $0.36 of instance time so far
    assert budget.instance_usd() == pytest.approx(0.36)
    budget.reserve(0.6, "a task")
    with pytest.raises(BudgetExceededError, match=(
            r"another task is estimated at \$0\.1000; this job has spent \$0\.9600 \(tasks \$0\.6000, instance time "
            r"\$0\.3600 for 360 s\), so it would pass the job's max_cost_usd of \$1\.00")):
        budget.reserve(0.1, "another task")
    budget.settle(0.6, 0.2)
    assert budget.ledger.spent() == pytest.approx(0.2)
    assert job_budget(tmp_path, 1.0, per_hour=3.6, started=now + 50).instance_usd() == 0.0  # a clock set back


def test_a_job_budget_is_found_by_every_process_of_the_job(tmp_path, monkeypatch):
    # setenv, not delenv: delenv of an unset variable records nothing, and start() below would then leave
    # this job's budget set for every later test of the process.
    monkeypatch.setenv(JOB_BUDGET_VARIABLE, "")
    assert JobBudget.current() is None
    monkeypatch.setattr(budgets.threading, "Thread", lambda **kwargs: type("T", (), {"start": lambda self: None})())
    started = JobBudget.start(2, 1)
    assert started.max_cost_usd == 2.0 and started.instance_usd_per_hour == 1.0
    assert JobBudget.current() == started
    assert json.loads(os.environ[JOB_BUDGET_VARIABLE]) == asdict(started)
    assert os.path.isdir(os.path.dirname(started.ledger_path))


def test_the_watchdog_stops_a_job_past_its_budget(tmp_path, monkeypatch):
    budget = job_budget(tmp_path, 1.0)
    stopped = []

    class Stopped(Exception):
        pass

    def stop(reason):
        stopped.append(reason)
        raise Stopped

    naps = []
    watcher, sleep = threading.get_ident(), budgets.time.sleep

    def nap(seconds):
        if threading.get_ident() != watcher:  # `time.sleep` is every thread's: others of the process sleep on
            return sleep(seconds)
        naps.append(seconds)
        budget.ledger.reserve(0.6, None, refusal)

    monkeypatch.setattr(JobBudget, "_stop", staticmethod(stop))
    monkeypatch.setattr(budgets.time, "sleep", nap)
    with pytest.raises(Stopped):
        budget._watch()
    # Under the limit ($0, $0.60) it slept; at $1.20 it stopped the job.
    assert naps == [budgets.WATCH_SECONDS] * 2
    assert stopped[0].startswith("BudgetExceededError: The job was stopped: it has spent $1.2000 (tasks $1.2000")
    assert stopped[0].endswith("past its max_cost_usd of $1.00.")


def test_stopping_writes_the_failure_reason_and_ends_the_process(tmp_path):
    code = "from prefect_braket.jobs.budget import JobBudget; JobBudget._stop('BudgetExceededError: over')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PREFECT_BRAKET_INSTANCE_DIR": str(tmp_path / "instance")})
    assert done.returncode == 1
    assert "BudgetExceededError: over" in done.stderr
    assert (tmp_path / "instance" / "output" / "failure").read_text() == "AlgorithmError: BudgetExceededError: over"
