"""Quantum tasks as Prefect task runs, and the seed example of Braket's documentation as a job."""

import json

import numpy as np
import pytest
from prefect import flow
from prefect.client.orchestration import get_client

from helpers.runs import latest_artifacts
from prefect_braket import BraketDevice, hybrid_job, run_quantum_batch, run_quantum_task
from prefect_braket.jobs import get_job_device_arn, log_metric
from prefect_braket.orchestration.context import artifact_key

PROGRAM = """OPENQASM 3.0;
input float theta;
qubit[2] q;
rx(theta) q[0];
cnot q[0], q[1];
#pragma braket result expectation x(q[0])
"""

Z_PROGRAM = """OPENQASM 3.0;
input float theta;
qubit[1] q;
rx(theta) q[0];
#pragma braket result expectation z(q[0])
"""


@hybrid_job(device="local:braket/braket_sv")
def run_hybrid_job(num_tasks: int = 1):
    device = BraketDevice(device_arn=get_job_device_arn())  # priority device of this job
    theta = 0.0
    priorities = set()
    for i in range(num_tasks):
        result = device.run(PROGRAM, shots=100, inputs={"theta": theta})
        priorities.add(result.queue_priority)
        exp_val = result.values[0]
        theta += exp_val
        log_metric(metric_name="exp_val", value=exp_val, iteration_number=i)
    return {"final_theta": theta, "final_exp_val": exp_val, "priorities": sorted(priorities)}


def test_seed_example_runs_as_a_job_and_publishes_its_metrics(engine):
    @flow
    def seed():
        job = run_hybrid_job(num_tasks=5)
        return job, job.result()

    state = seed(return_state=True)
    job, result = state.result()
    assert result["priorities"] == ["Priority"]  # tasks to the job's own device carry its token
    assert abs(result["final_exp_val"]) <= 0.5
    latest = latest_artifacts(state.state_details.flow_run_id)
    table = json.loads(latest[f"{artifact_key(job.name)}-metrics"].data)
    assert table["iteration_number"] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert table["exp_val"][-1] == pytest.approx(result["final_exp_val"])
    assert latest[f"{artifact_key(job.name)}-progress"].data == 100.0


def test_cached_task_is_not_run_again_across_flow_runs():
    device = BraketDevice()

    @flow
    def scan(theta):
        first = run_quantum_task(device, Z_PROGRAM, shots=50, inputs={"theta": theta}, return_state=True)
        again = run_quantum_task(device, Z_PROGRAM, shots=50, inputs={"theta": np.float64(theta)}, return_state=True)
        other = run_quantum_task(device, Z_PROGRAM, shots=50, inputs={"theta": theta + 1}, return_state=True)
        return first, again, other

    first, again, other = scan(0.25)
    assert first.result().task_arn == again.result().task_arn  # the same sampled result
    assert again.name == "Cached"
    assert other.name == "Completed" and other.result().task_arn != first.result().task_arn
    rerun, _, _ = scan(0.25)  # a new flow run resumes without re-paying for shots
    assert rerun.name == "Cached" and rerun.result().task_arn == first.result().task_arn


def test_batch_runs_in_one_task_and_keeps_order():
    device = BraketDevice(max_parallel=4)
    thetas = np.linspace(0, np.pi, 8)

    @flow
    def batch():
        return run_quantum_batch(device, [Z_PROGRAM] * len(thetas), shots=0, inputs=[{"theta": t} for t in thetas])

    results = batch()
    assert [r.values[0] for r in results] == pytest.approx(list(np.cos(thetas)))
    assert len({r.task_arn for r in results}) == len(thetas)


QPU = "arn:aws:braket:us-east-1::device/qpu/ionq/Forte-1"


def test_device_concurrency_limit_runs_one_of_your_jobs_at_a_time(engine):
    import threading

    from prefect_braket import HybridJob
    from prefect_braket.orchestration.submission import device_limit_name

    sleepy = hybrid_job(device=QPU, backend="local", device_concurrency_limit=True)(
        lambda s: __import__("time").sleep(s))
    jobs: list[HybridJob] = []

    @flow
    def exclusive(seconds: float):
        jobs.append(sleepy(seconds))

    threads = [threading.Thread(target=exclusive, args=(1.0,)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    first, second = sorted(jobs, key=lambda j: j.metadata()["createdAt"])
    assert [j.state() for j in (first, second)] == ["COMPLETED", "COMPLETED"]
    # The second job was not even created until the first had ended: it waited on the limit.
    assert second.metadata()["createdAt"] >= first.metadata()["endedAt"]
    with get_client(sync_client=True) as client:
        limit = client.read_global_concurrency_limit_by_name(device_limit_name(QPU))
    assert limit.limit == 1 and limit.name == "braket-device-qpu-ionq-forte-1"


def test_a_submission_held_for_its_window_creates_the_job_once_the_window_opens(engine, monkeypatch):
    from datetime import datetime, timedelta, timezone

    opens = datetime.now(timezone.utc) + timedelta(seconds=2)
    monkeypatch.setattr(BraketDevice, "next_window_opens", lambda self, at=None: opens)
    held = hybrid_job(device=BraketDevice(device_arn=QPU), backend="local", wait_for_execution_window=True,
                      max_window_wait_seconds=60)(lambda: 1)

    @flow
    def submit():
        return held()

    job = submit()
    assert job.result() == {"result": 1}
    created = engine.get_job(job.arn)["createdAt"]
    assert datetime.fromisoformat(str(created)).astimezone(timezone.utc) >= opens  # not created before it opened


def test_submission_waits_for_the_execution_window(engine, monkeypatch):
    from datetime import datetime, timedelta, timezone

    from prefect_braket.quantum.devices import DeviceDescription, ExecutionWindow

    now = datetime.now(timezone.utc)
    window = ExecutionWindow("Everyday", (now + timedelta(hours=2)).strftime("%H:%M"),
                             (now + timedelta(hours=3)).strftime("%H:%M"))
    closed = DeviceDescription(QPU, "Forte-1", "IonQ", "QPU", "ONLINE", 36, (1, 5000), (window,))
    device = BraketDevice(device_arn=QPU)
    monkeypatch.setattr(BraketDevice, "description", lambda self, max_age_seconds=0.0: closed)
    waits = hybrid_job(device=device, backend="local", wait_for_execution_window=True,
                       max_window_wait_seconds=60)(lambda: 1)

    @flow
    def submit():
        return waits()

    state = submit(return_state=True)
    assert state.is_failed()
    too_late = "opens its next execution window at .* later than max_window_wait_seconds=60"
    with pytest.raises(TimeoutError, match=too_late):
        state.result()
    from helpers.waiting import job_count

    assert job_count(engine) == 0  # nothing was submitted, nothing paid for
    open_now = DeviceDescription(QPU, "Forte-1", "IonQ", "QPU", "ONLINE", 36, (1, 5000), ())
    monkeypatch.setattr(BraketDevice, "description", lambda self, max_age_seconds=0.0: open_now)
    assert submit().result() == {"result": 1}
