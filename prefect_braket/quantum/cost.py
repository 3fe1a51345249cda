"""What a task or a job will cost, before it runs, and a budget that refuses what would cross it.

Prices come from a dated table shipped with the package (`prices.json`, its source named in it),
which a user can replace (`PriceTable.from_file`, or `$PREFECT_BRAKET_PRICES`). Estimates follow
Braket's billing: QPUs per task plus per shot; simulators per minute of execution with a
3-second minimum; hybrid jobs per hour of instance time plus their tasks. Local simulators cost 0.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from prefect_braket.core.arns import AWS_DEVICE_ARN, LOCAL_SIMULATORS
from prefect_braket.core.errors import PrefectBraketError
from prefect_braket.jobs.budget import BudgetExceededError, SpendingLedger

__all__ = ["Budget", "BudgetExceededError", "PriceTable", "UnknownPriceError", "reserving"]


class UnknownPriceError(PrefectBraketError, KeyError):
    """The price table has no price for this device or instance."""


def _family(name: str) -> str:
    # "Forte-1" → "forte", "Ankaa-3" → "ankaa", "Ibex-Q1" → "ibex", "Cepheus-1-108Q" → "cepheus"
    return re.split(r"[-_ ]", name.lower())[0]


@dataclass(frozen=True)
class PriceTable:
    """Prices by device family and instance type."""

    table: dict[str, Any]

    @classmethod
    def default(cls) -> "PriceTable":
        override = os.environ.get("PREFECT_BRAKET_PRICES")
        if override:
            return cls.from_file(override)
        return cls(json.loads(resources.files("prefect_braket.quantum").joinpath("prices.json").read_text()))

    @classmethod
    def from_file(cls, path: str | Path) -> "PriceTable":
        return cls(json.loads(Path(path).read_text()))

    def task_cost(self, device_arn: str, shots: int, duration_ms: float | None = None) -> float:
        """The estimated price of one task; for simulators, of `duration_ms` of execution (minimum billed)."""
        if device_arn in LOCAL_SIMULATORS:
            return 0.0
        match = AWS_DEVICE_ARN.match(device_arn)
        if not match:
            raise UnknownPriceError(f"No price for {device_arn!r}: not a Braket device ARN.")
        kind, provider, name = match.group(3), match.group(4).lower(), match.group(5)
        if kind == "qpu":
            key = f"{provider}/{_family(name)}"
            price = self.table["qpu"].get(key) or self.table["qpu"].get(f"{provider}/{name.lower()}")
            if price is None:
                raise UnknownPriceError(f"No price for QPU {key!r} in the price table ({self.table.get('as_of')}).")
            return price["per_task"] + price["per_shot"] * shots
        per_minute = self.table["simulator_per_minute"].get(f"{provider}/{name.lower()}")
        if per_minute is None:
            raise UnknownPriceError(f"No price for simulator {provider}/{name} in the price table.")
        billed = max(duration_ms or 0.0, self.table.get("simulator_minimum_ms", 3000))
        return per_minute * billed / 60000.0

    def job_instance_cost(self, instance_type: str, seconds: float, instance_count: int = 1) -> float:
        """The price of a job's classical instances for `seconds`; 0 on the embedded engine."""
        per_hour = self.table["job_instance_per_hour"].get(instance_type)
        if per_hour is None:
            raise UnknownPriceError(f"No price for job instance {instance_type!r} in the price table.")
        return per_hour * instance_count * seconds / 3600.0


    def job_instance_cost_of(self, job: dict[str, Any]) -> float:
        """The instance cost of a job from its GetJob description: billed time (or run time so far)
        at its instance type's price; 0 on the embedded engine. Its quantum tasks are billed apart."""
        if job["jobArn"].startswith("local:"):
            return 0.0
        seconds = job.get("billableDuration")
        seconds = seconds / 1000.0 if seconds is not None else 0.0
        if not seconds and job.get("startedAt"):
            ended = job.get("endedAt") or datetime.now(timezone.utc)
            seconds = (ended - job["startedAt"]).total_seconds()
        instances = job["instanceConfig"]
        return self.job_instance_cost(instances["instanceType"], seconds, instances.get("instanceCount", 1))


class Budget:
    """A spending limit shared by whatever runs against it: threads, tasks, copies, and (with a file
    ledger) processes.

    Example:
        One budget for several devices:
        ```python
        budget = Budget(max_cost_usd=5.0)
        sv1 = BraketDevice(device_arn=SV1, budget=budget)
        dm1 = BraketDevice(device_arn=DM1, budget=budget)
        ```
    """

    def __init__(self, max_cost_usd: float | None, prices: PriceTable | None = None,
                 ledger: SpendingLedger | None = None):
        if max_cost_usd is not None and max_cost_usd < 0:
            raise ValueError(f"max_cost_usd must be at least 0, got {max_cost_usd}.")
        self.max_cost_usd = max_cost_usd
        self.prices = prices or PriceTable.default()
        self.ledger = ledger or SpendingLedger()

    def __repr__(self) -> str:
        return f"Budget(max_cost_usd={self.max_cost_usd}, {self.ledger!r})"

    @property
    def spent_usd(self) -> float:
        """What has been spent (estimates of tasks still running included)."""
        return self.ledger.spent()

    def reserve(self, estimate_usd: float, what: str) -> None:
        """Counts `estimate_usd` as spent, or raises if it would cross the limit (nothing counted then)."""
        self.ledger.reserve(estimate_usd, self.max_cost_usd, lambda spent: (
            f"{what} is estimated at ${estimate_usd:.4f}; with ${spent:.4f} already spent that "
            f"would pass the budget of ${self.max_cost_usd:.2f}. Raise max_cost_usd or run less."))

    def settle(self, reserved_usd: float, actual_usd: float) -> None:
        """Replaces an estimate with what the task actually cost."""
        self.ledger.settle(reserved_usd, actual_usd)

    def reset(self) -> None:
        """Counts from $0 again (a saved block's spending is kept until then)."""
        self.ledger.update(lambda spent: 0.0)


@contextlib.contextmanager
def reserving(budgets: Sequence[Any], estimate_usd: float, what: str) -> Iterator[Callable[[float], None]]:
    """Reserves `estimate_usd` against every budget (`Budget`, `JobBudget`), or against none if one
    refuses; the work inside calls the yielded `settle(actual_usd)` once it knows what it cost.
    Work that fails costs $0; work that never says counts its estimate."""
    reserved: list[Any] = []
    try:
        for budget in budgets:
            budget.reserve(estimate_usd, what)
            reserved.append(budget)
        actual: list[float] = []
        yield actual.append
    except BaseException:
        for budget in reserved:
            budget.settle(estimate_usd, 0.0)
        raise
    for budget in reserved:
        budget.settle(estimate_usd, actual[-1] if actual else estimate_usd)
