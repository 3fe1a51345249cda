"""Running programs on a device: the checks and budgets every quantum task goes through, then a
`TaskExecutor` that runs them where the device is.

`run_programs` is the one path: every program is checked against the device (`check_runnable`)
and the whole batch's estimate reserved against every budget that applies (the device's, and
inside a hybrid job with `max_cost_usd` the job's) before the first task is created; then the
executor runs them, and each budget is settled with what the tasks cost. Executors: the local
simulators (`simulators.LocalSimulatorExecutor`) and Amazon Braket (`braket_tasks.BraketTaskExecutor`).
"""

from __future__ import annotations

from typing import Protocol, Sequence

from prefect_braket.jobs.budget import JobBudget
from prefect_braket.quantum.cost import Budget, PriceTable, reserving
from prefect_braket.quantum.devices import (
    DeviceDescription,
    check_runnable,
    job_priority_token,
)
from prefect_braket.quantum.programs import Program
from prefect_braket.quantum.results import TaskResult


class TaskExecutor(Protocol):
    """What runs one device's quantum tasks."""

    def describe(self) -> DeviceDescription:
        """What the device is now: status, qubits, shots range, result types, windows, queues."""

    def execute(self, programs: Sequence[Program], shots: int, job_token: str | None, max_parallel: int,
                client_token: str | None) -> list[TaskResult]:
        """Runs checked programs; results in program order. `job_token` gives a hybrid job's
        priority; a `client_token` that is the same on every retry gets back tasks already created."""


def run_programs(executor: TaskExecutor, description: DeviceDescription, programs: Sequence[Program], shots: int,
                 budget: Budget, prices: PriceTable, max_parallel: int, client_token: str | None) -> list[TaskResult]:
    """Checks, reserves, runs and settles a batch (see the module's docstring); results in order."""
    for program in programs:
        check_runnable(description, program, shots)
    device_arn = description.arn
    token = job_priority_token(device_arn)
    estimate = prices.task_cost(device_arn, shots) * len(programs)
    what = f"A {shots}-shot task on {device_arn}" if len(programs) == 1 else (
        f"A batch of {len(programs)} {shots}-shot tasks on {device_arn}")
    budgets = [budget, *filter(None, [JobBudget.current()])]
    with reserving(budgets, estimate, what) as settle:
        results = executor.execute(programs, shots, token, max_parallel, client_token)
        for result in results:
            result.queue_priority = "Priority" if token else "Normal"
            result.cost_usd = prices.task_cost(device_arn, shots, result.execution_duration_ms)
        settle(sum(r.cost_usd for r in results))
    return results
