"""`run_programs`, the one path every quantum task takes: the whole batch's estimate is reserved
against every budget before the first task runs, and settled with what the tasks cost. The executor
is a recording stand-in, so what the budget holds while the batch runs can be read."""

import json
from dataclasses import asdict
from types import SimpleNamespace

import pytest

from prefect_braket.jobs.budget import JOB_BUDGET_VARIABLE, BudgetExceededError, JobBudget
from prefect_braket.quantum.cost import Budget, PriceTable, reserving
from prefect_braket.quantum.devices import DeviceDescription
from prefect_braket.quantum.executor import run_programs
from prefect_braket.quantum.programs import to_program

FORTE = "arn:aws:braket:us-east-1::device/qpu/ionq/Forte-1"
SV1 = "arn:aws:braket:::device/quantum-simulator/amazon/sv1"
PRICES = PriceTable({"qpu": {"ionq/forte": {"per_task": 0.3, "per_shot": 0.01}},
                     "simulator_per_minute": {"amazon/sv1": 0.075}, "simulator_minimum_ms": 3000,
                     "job_instance_per_hour": {}})
PER_TASK = 0.3 + 0.01 * 10  # a 10-shot task on Forte
PROGRAM = to_program("OPENQASM 3.0;\nqubit[1] q;\nh q[0];\n")


def description(arn):
    return DeviceDescription(arn=arn, name=arn.rsplit("/", 1)[1], provider="x", device_type="QPU" if "qpu" in arn
                             else "SIMULATOR", status="ONLINE", qubit_count=30, shots_range=(0, 10_000))


class Executor:
    """Runs nothing; records what the budgets held while it ran, and answers with `durations_ms`."""

    def __init__(self, budgets=(), durations_ms=None, error=None):
        self.budgets, self.durations_ms, self.error = budgets, durations_ms, error
        self.calls: list[tuple] = []
        self.held: list[list[float]] = []

    def execute(self, programs, shots, job_token, max_parallel, client_token):
        self.calls.append((len(programs), shots, job_token, max_parallel, client_token))
        self.held.append([b.ledger.spent() for b in self.budgets])
        if self.error:
            raise self.error
        durations = self.durations_ms or [None] * len(programs)
        return [SimpleNamespace(execution_duration_ms=d) for d in durations]


def run(executor, budget, arn=FORTE, count=3, shots=10):
    return run_programs(executor, description(arn), [PROGRAM] * count, shots, budget, PRICES, 4, "token-1")


def test_a_batch_holds_its_whole_estimate_while_it_runs_and_then_what_it_cost():
    budget = Budget(max_cost_usd=100.0, prices=PRICES)
    executor = Executor([budget])
    results = run(executor, budget)
    assert executor.held == [[pytest.approx(3 * PER_TASK)]]  # three tasks' estimate, not one
    assert executor.calls == [(3, 10, None, 4, "token-1")]
    assert [r.cost_usd for r in results] == [pytest.approx(PER_TASK)] * 3
    assert [r.queue_priority for r in results] == ["Normal"] * 3
    assert budget.spent_usd == pytest.approx(3 * PER_TASK)


def test_a_batch_over_the_budget_is_refused_whole_before_its_first_task():
    budget = Budget(max_cost_usd=2.5 * PER_TASK, prices=PRICES)
    executor = Executor([budget])
    with pytest.raises(BudgetExceededError, match=r"A batch of 3 10-shot tasks on .*Forte-1 is estimated at \$1\.2000"):
        run(executor, budget)
    assert executor.calls == [] and budget.spent_usd == 0.0
    run(executor, budget, count=2)  # two fit
    assert budget.spent_usd == pytest.approx(2 * PER_TASK)
    with pytest.raises(BudgetExceededError, match=r"A 10-shot task on .*Forte-1 is estimated at \$0\.4000; with "
                                                  r"\$0\.8000 already spent"):
        run(executor, budget, count=1)


def test_a_simulator_batch_is_settled_with_its_billed_durations():
    budget = Budget(max_cost_usd=None, prices=PRICES)
    executor = Executor([budget], durations_ms=[6000.0, 1000.0])
    results = run(executor, budget, arn=SV1, count=2)
    minimum = 0.075 * 3000 / 60000
    assert executor.held == [[pytest.approx(2 * minimum)]]  # estimated at the billed minimum each
    assert [r.cost_usd for r in results] == [pytest.approx(0.075 * 6000 / 60000), pytest.approx(minimum)]
    assert budget.spent_usd == pytest.approx(0.075 * 6000 / 60000 + minimum)


def test_a_batch_that_fails_costs_nothing():
    budget = Budget(max_cost_usd=10.0, prices=PRICES)
    with pytest.raises(RuntimeError, match="lost"):
        run(Executor([budget], error=RuntimeError("lost")), budget)
    assert budget.spent_usd == 0.0


def job_budget(monkeypatch, tmp_path, max_cost_usd):
    budget = JobBudget(max_cost_usd, 0.0, 0.0, str(tmp_path / "job-ledger.json"))
    monkeypatch.setenv(JOB_BUDGET_VARIABLE, json.dumps(asdict(budget)))
    return budget


def test_inside_a_job_the_batch_is_reserved_against_the_jobs_budget_too(monkeypatch, tmp_path):
    job = job_budget(monkeypatch, tmp_path, max_cost_usd=10.0)
    device = Budget(max_cost_usd=None, prices=PRICES)
    executor = Executor([device, job])
    run(executor, device)
    assert executor.held == [[pytest.approx(3 * PER_TASK), pytest.approx(3 * PER_TASK)]]
    assert job.ledger.spent() == pytest.approx(3 * PER_TASK)


def test_a_job_budget_that_refuses_leaves_the_device_budget_untouched(monkeypatch, tmp_path):
    job = job_budget(monkeypatch, tmp_path, max_cost_usd=2 * PER_TASK)
    device = Budget(max_cost_usd=None, prices=PRICES)
    executor = Executor([device, job])
    with pytest.raises(BudgetExceededError, match=r"would pass the job's max_cost_usd of \$0\.80"):
        run(executor, device)
    assert executor.calls == [] and device.spent_usd == 0.0 and job.ledger.spent() == 0.0


def test_reserving_counts_the_estimate_of_work_that_never_says_what_it_cost():
    first, second = Budget(None, prices=PRICES), Budget(None, prices=PRICES)
    with reserving([first, second], 0.5, "silent work"):
        assert (first.spent_usd, second.spent_usd) == (0.5, 0.5)
    assert (first.spent_usd, second.spent_usd) == (0.5, 0.5)
    with reserving([first, second], 0.5, "told") as settle:
        settle(0.1)
        settle(0.2)  # the last word counts
    assert first.spent_usd == pytest.approx(0.7) and second.spent_usd == pytest.approx(0.7)


def test_reserving_against_none_when_a_later_budget_refuses():
    roomy, tight = Budget(None, prices=PRICES), Budget(0.25, prices=PRICES)
    with pytest.raises(BudgetExceededError):
        with reserving([roomy, tight], 0.5, "too much"):
            raise AssertionError("the work must not start")
    assert roomy.spent_usd == 0.0 and tight.spent_usd == 0.0


def test_a_running_jobs_instance_cost_counts_until_now_for_one_instance_by_default():
    from datetime import datetime, timedelta, timezone

    prices = PriceTable({"job_instance_per_hour": {"ml.m5.large": 0.2}})
    job = {"jobArn": "arn:aws:braket:us-east-1:123456789012:job/x", "instanceConfig": {"instanceType": "ml.m5.large"},
           "startedAt": datetime.now(timezone.utc) - timedelta(hours=2)}  # running: no endedAt, no billed time yet
    assert prices.job_instance_cost_of(job) == pytest.approx(0.4, rel=1e-3)
    assert prices.job_instance_cost_of({**job, "startedAt": None}) == 0.0  # not started: nothing yet
    with pytest.raises(KeyError, match="No price for job instance 'ml.p3.2xlarge' in the price table"):
        prices.job_instance_cost("ml.p3.2xlarge", 60)
