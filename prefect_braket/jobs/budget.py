"""Spending: budgets that hold across threads and processes, and a hybrid job's own `max_cost_usd`.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from prefect_braket.jobs.data_persistence import write_atomically
from prefect_braket.jobs.environment import failure_file


class BudgetExceededError(RuntimeError):
    """Running this would take spending past the budget."""


class SpendingLedger:
    """Money spent against one budget, where everyone spending against it sees it.

    Without a `path` it is held in memory, shared by the threads (and copies) of one process. With a
    path it is a JSON file under an exclusive lock, shared by processes: the processes of one job,
    or every load of a saved device block on one machine. A damaged file is an error, never $0.
    """

    def __init__(self, path: str | Path | None = None, spent_usd: float = 0.0):
        self.path = Path(path) if path else None
        self._spent = spent_usd
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        # A lock does not travel; a copy in another process goes on from what was spent so far.
        return {"path": self.path, "_spent": self.spent()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        type(self).__init__(self, state["path"], state["_spent"])

    def __repr__(self) -> str:
        return f"SpendingLedger({str(self.path) if self.path else 'in memory'}, spent_usd={self.spent():.4f})"

    def _read(self, path: Path) -> float:
        try:
            text = path.read_text()
        except FileNotFoundError:
            return 0.0
        try:
            spent = json.loads(text)["spent_usd"]
            if isinstance(spent, bool) or not isinstance(spent, (int, float)) or not math.isfinite(spent):
                raise TypeError(f"spent_usd is {spent!r}")
            return float(spent)
        except (ValueError, KeyError, TypeError) as error:
            raise RuntimeError(
                f"The spending ledger {path} is damaged ({type(error).__name__}: {error}): restore it, or "
                "remove it to count this budget from $0 again."
            ) from None

    def update(self, change: Callable[[float], float]) -> float:
        """Replaces the amount spent with `change(spent)` atomically and returns it; if `change`
        raises, nothing changes."""
        with self._lock:
            if self.path is None:
                self._spent = change(self._spent)
                return self._spent
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            descriptor = os.open(self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX)
                spent = self._read(self.path)
                new = change(spent)
                if new != spent:
                    write_atomically(self.path, json.dumps({"spent_usd": new}))
                return new
            finally:
                os.close(descriptor)

    def spent(self) -> float:
        return self.update(lambda spent: spent)

    def reserve(self, estimate_usd: float, limit_usd: float | None, refusal: Callable[[float], str]) -> None:
        """Counts `estimate_usd` as spent, or raises `BudgetExceededError(refusal(spent))` if that
        would pass `limit_usd` (None: no limit); nothing is counted then."""
        def add(spent: float) -> float:
            if limit_usd is not None and spent + estimate_usd > limit_usd + 1e-12:
                raise BudgetExceededError(refusal(spent))
            return spent + estimate_usd

        self.update(add)

    def settle(self, reserved_usd: float, actual_usd: float) -> None:
        """Replaces an estimate with what was actually spent."""
        self.update(lambda spent: spent + actual_usd - reserved_usd)


JOB_BUDGET_VARIABLE = "PREFECT_BRAKET_JOB_BUDGET"


WATCH_SECONDS = 0.5


@dataclass(frozen=True)
class JobBudget:
    """A hybrid job's `max_cost_usd`: its quantum tasks plus its instance time, held inside the job.

    Started by the job's entry point, it is found by every process of the job through an
    environment variable; tasks a `BraketDevice` runs reserve against it, and a watchdog thread
    ends the job, with `BudgetExceededError` as its failure reason, once instance time and tasks
    together pass the limit. Instance time counts from the start of the job's code.
    """

    max_cost_usd: float
    instance_usd_per_hour: float
    started: float
    ledger_path: str

    @classmethod
    def start(cls, max_cost_usd: float, instance_usd_per_hour: float) -> "JobBudget":
        """Sets this job's budget up (for its later processes too) and starts its watchdog."""
        ledger = Path(tempfile.mkdtemp(prefix="prefect-braket-budget-")) / "tasks.json"
        budget = cls(float(max_cost_usd), float(instance_usd_per_hour), time.time(), str(ledger))
        os.environ[JOB_BUDGET_VARIABLE] = json.dumps(asdict(budget))
        threading.Thread(target=budget._watch, name="prefect-braket-budget", daemon=True).start()
        return budget

    @classmethod
    def current(cls) -> "JobBudget | None":
        """The budget of the job this code runs in, if it has one."""
        text = os.environ.get(JOB_BUDGET_VARIABLE)
        return cls(**json.loads(text)) if text else None

    @property
    def ledger(self) -> SpendingLedger:
        return SpendingLedger(self.ledger_path)

    def instance_usd(self) -> float:
        return self.instance_usd_per_hour * max(0.0, time.time() - self.started) / 3600.0

    def describe(self, tasks_usd: float) -> str:
        instance = self.instance_usd()
        return (f"${tasks_usd + instance:.4f} (tasks ${tasks_usd:.4f}, instance time ${instance:.4f} for "
                f"{time.time() - self.started:.0f} s)")

    def reserve(self, estimate_usd: float, what: str) -> None:
        """Counts a task's estimate, or raises if it would take the job past its budget."""
        self.ledger.reserve(estimate_usd, self.max_cost_usd - self.instance_usd(), lambda spent: (
            f"{what} is estimated at ${estimate_usd:.4f}; this job has spent {self.describe(spent)}, so it "
            f"would pass the job's max_cost_usd of ${self.max_cost_usd:.2f}. Raise max_cost_usd or run less."))

    def settle(self, reserved_usd: float, actual_usd: float) -> None:
        """Replaces a task's estimate with what it cost."""
        self.ledger.settle(reserved_usd, actual_usd)

    def _watch(self) -> None:
        while True:
            spent = self.ledger.spent()
            if spent + self.instance_usd() > self.max_cost_usd:
                self._stop(f"BudgetExceededError: The job was stopped: it has spent {self.describe(spent)}, past its "
                           f"max_cost_usd of ${self.max_cost_usd:.2f}.")
            time.sleep(WATCH_SECONDS)

    @staticmethod
    def _stop(reason: str) -> None:
        # Ending the process is the one stop that user code cannot catch; what it wrote to its
        # results and checkpoint directories stays, and the engine ends its other processes.
        file = failure_file()
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(f"AlgorithmError: {reason}")
        print(reason, file=sys.stderr, flush=True)
        os._exit(1)
