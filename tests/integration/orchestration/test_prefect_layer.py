"""The Prefect layer: flows, task runs, artifacts and blocks around real engine jobs."""

import asyncio
import json
import logging
import re
import time

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

from helpers import examples
from helpers.faults import LosesFirstCreate
from helpers.paths import REPO
from helpers.runs import all_artifacts, flow_run_log_records, latest_artifacts
from helpers.waiting import job_count, pid_alive, wait_for
from prefect_braket import (
    BraketHybridJob,
    HybridJob,
    LocalEngine,
    hybrid_job,
    wait_for_job,
    wait_for_job_async,
)
from prefect_braket.core.spec import HIDDEN_HYPERPARAMETER
from prefect_braket.jobs import log_metric, save_job_checkpoint
from prefect_braket.orchestration.context import artifact_key

train = hybrid_job(device="local:braket/braket_sv")(examples.train)


def await_result(state):
    result = state.result()
    return asyncio.run(result) if asyncio.iscoroutine(result) else result


def _task_runs(flow_run_id, expected):
    def read():
        with get_client(sync_client=True) as client:
            runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
        return runs if len(runs) >= expected else None

    return wait_for(read, timeout=15, interval=0.2)


def test_example_in_a_flow_publishes_metrics_as_artifacts(engine):
    @flow
    def experiment():
        job = train(num_tasks=5)
        return job, job.result()

    state = experiment(return_state=True)
    job, result = state.result()
    assert result == {"final_theta": pytest.approx(0.5)}
    key = artifact_key(job.name)
    artifacts = latest_artifacts(state.state_details.flow_run_id)
    table = json.loads(artifacts[f"{key}-metrics"].data)
    assert table["theta"] == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5])
    assert table["iteration_number"] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert artifacts[f"{key}-progress"].type == "progress"
    assert artifacts[f"{key}-progress"].data == 100.0
    summary = artifacts[f"{key}-summary"].data
    assert "COMPLETED" in summary and job.arn in summary and "last theta | 0.5" in summary
    assert "| estimated cost | $0.0000" in summary  # the embedded engine is free
    names = sorted(r.name for r in _task_runs(state.state_details.flow_run_id, 3))
    assert names[0].startswith("get-braket-job-result-")
    assert names[1] == "submit-" + job.name
    assert names[2].startswith("wait-for-braket-job-")


@hybrid_job(device="local:braket/braket_sv")
def logs_metrics_slowly(iterations: int = 6):
    for i in range(iterations):
        log_metric(metric_name="loss", value=1.0 / (i + 1), iteration_number=i)
        time.sleep(0.3)
    return {"done": iterations}


def test_a_metrics_table_refreshed_while_its_job_runs_is_one_artifact_updated_in_place(engine):
    @flow
    def watched():
        job = logs_metrics_slowly()
        wait_for_job(job, table_every_seconds=0, poll_interval_seconds=0.1)  # a refresh at every new row
        return job

    state = watched(return_state=True)
    key = f"{artifact_key(state.result().name)}-metrics"
    versions = [a for a in all_artifacts(state.state_details.flow_run_id) if a.key == key]
    # One version, so one card in the run's Artifacts tab, with every row: refreshed, not re-published.
    assert len(versions) == 1
    assert json.loads(versions[0].data)["loss"] == pytest.approx([1 / (i + 1) for i in range(6)])
    assert versions[0].updated > versions[0].created


class LossyEngine(LosesFirstCreate, LocalEngine):
    pass


def test_retried_submission_reattaches_instead_of_creating_a_second_job(engine):
    lossy = LossyEngine(engine.root)
    square = hybrid_job(device="local:braket/braket_sv", backend=lossy)(lambda x: x * x)

    @flow
    def experiment():
        return square(6).result()

    state = experiment(return_state=True)
    assert state.result() == {"result": 36}
    assert LossyEngine.lost == 1
    assert job_count(engine) == 1
    submit = [r for r in _task_runs(state.state_details.flow_run_id, 3) if r.name.startswith("submit-")]
    # One task run, run twice: the retry is the same task run, so it carried the same client token.
    # (Counting task runs alone says nothing: a retry never makes a second one.)
    assert len(submit) == 1 and submit[0].run_count == 2 and submit[0].state.is_completed()


@hybrid_job(device="local:braket/braket_sv")
def long_sleep():
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    save_job_checkpoint({"child": child.pid})
    time.sleep(120)


def test_flow_timeout_cancels_its_job(engine):
    submitted = []

    @flow(timeout_seconds=3)
    def experiment():
        job = long_sleep()
        submitted.append(job)
        return job.result()

    state = experiment(return_state=True)
    assert state.is_failed()
    job = submitted[0]
    meta = job.wait_until_complete(timeout_seconds=15, poll_interval_seconds=0.1)
    assert meta["status"] == "CANCELLED"
    checkpoint = engine.job_directory(job.arn) / "checkpoints" / f"{job.name}.json"
    child = json.loads(checkpoint.read_text())["dataDictionary"]["child"]
    wait_for(lambda: not pid_alive(child), timeout=5)


def test_async_waits_run_side_by_side(engine):
    nap = hybrid_job(device="local:braket/braket_sv")(lambda s: time.sleep(s) or s)

    @flow
    async def experiment():
        jobs = [nap(1.0), nap(1.0)]
        metas = await asyncio.gather(*(wait_for_job_async(job, poll_interval_seconds=0.2) for job in jobs))
        return jobs, metas

    started = time.monotonic()
    state = asyncio.run(experiment(return_state=True))
    jobs, metas = await_result(state)
    assert [m["status"] for m in metas] == ["COMPLETED", "COMPLETED"]
    assert [j.result() for j in jobs] == [{"result": 1.0}, {"result": 1.0}]
    # Both ran at once: their run windows overlap.
    assert metas[0]["startedAt"] < metas[1]["endedAt"] and metas[1]["startedAt"] < metas[0]["endedAt"]
    assert time.monotonic() - started < 20
    artifacts = latest_artifacts(state.state_details.flow_run_id)
    for job in jobs:
        assert artifacts[f"{artifact_key(job.name)}-progress"].data == 100.0
        assert "COMPLETED" in artifacts[f"{artifact_key(job.name)}-summary"].data


SECRET = "sk-never-in-an-artifact"


@hybrid_job(device="local:braket/braket_sv")
def diverges(num_iterations: int = 5, learning_rate: float = 0.1, api_key: str = SECRET):
    def step(i):
        if i == 2:
            raise ValueError("the optimizer diverged")

    for i in range(num_iterations):
        log_metric(metric_name="loss", value=learning_rate + 0.2 * i, iteration_number=i)  # 0.1 + 0.2 is not 0.3
        step(i)


def test_a_failed_job_fails_its_wait_with_one_error_and_its_artifacts_say_how_it_ended(engine):
    submitted = []

    @flow
    def experiment():
        submitted.append(diverges())
        return submitted[0].result(poll_interval_seconds=0.2)

    state = experiment(return_state=True)
    assert state.is_failed()
    job, flow_run_id = submitted[0], state.state_details.flow_run_id
    reason = "AlgorithmError: ValueError: the optimizer diverged"
    ended = re.escape(f"Job {job.name} FAILED after ") + r"\d+\.\d s: " + re.escape(reason)
    where = f'HybridJob.attach("{job.arn}").logs(), or {engine.job_directory(job.arn) / "log.txt"}'
    waits = [r for r in _task_runs(flow_run_id, 2) if r.name.startswith("wait-for-braket-job")]
    assert len(waits) == 1 and waits[0].state.is_failed()  # red where the job failed, not after it
    frame = r' \(raised at File "<dynamic-code>", line \d+, in step\)\. Its whole log: '
    assert re.search(ended + frame, waits[0].state.message)
    assert where in waits[0].state.message

    records = flow_run_log_records(flow_run_id)
    # The job's traceback is shown once, forwarded from its log; no error of ours or Prefect's repeats it.
    assert [r.message.startswith(f"[{job.name}] ") for r in records if ", in diverges" in r.message] == [True]
    assert not any("\\n" in r.message for r in records)  # no message escaped onto one line
    wait_errors = [r for r in records if r.task_run_id == waits[0].id and r.level >= logging.ERROR]
    assert len(wait_errors) == 1 and re.search(ended, wait_errors[0].message) and where in wait_errors[0].message

    artifacts = latest_artifacts(flow_run_id)
    key = artifact_key(job.name)
    progress = artifacts[f"{key}-progress"]
    assert progress.data == 60.0  # iterations 0-2 of 5: where it got to, not 100%
    assert re.fullmatch(ended, progress.description)
    table = json.loads(artifacts[f"{key}-metrics"].data)
    assert table["loss"] == [0.1, 0.3, 0.5]
    assert table["iteration_number"] == [0, 1, 2] and all(type(i) is int for i in table["iteration_number"])
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", t) for t in table["timestamp"])
    summary = artifacts[f"{key}-summary"].data
    assert "| last iteration_number | 2 |" in summary and "| last loss | 0.5 |" in summary
    assert re.search(r"\| queue position \| none reported \(queued \d+\.\d s\) \|", summary)
    assert "| `learning_rate` | 0.1 |" in summary and "| `num_iterations` | 5 |" in summary
    assert f"| `api_key` | {HIDDEN_HYPERPARAMETER} |" in summary
    assert not any(SECRET in f"{a.data} {a.description}" for a in all_artifacts(flow_run_id))
    assert not any(SECRET in r.message for r in records)


@hybrid_job(device="local:braket/braket_sv")
def naps(seconds: float = 60.0):
    time.sleep(seconds)


def test_a_cancelled_job_fails_a_wait_unless_the_wait_tolerates_it(engine):
    @flow
    def experiment():
        job = naps()
        wait_for(lambda: job.state() == "RUNNING", timeout=30)
        job.cancel()
        tolerated = wait_for_job.with_options(task_run_name="tolerant")(
            job, poll_interval_seconds=0.2, raise_on_failure=False)
        assert tolerated["status"] == "CANCELLED"
        wait_for_job.with_options(task_run_name="strict")(job, poll_interval_seconds=0.2)

    state = experiment(return_state=True)
    assert state.is_failed() and "JobFailedError" in state.message and " CANCELLED after " in state.message
    runs = {r.name: r for r in _task_runs(state.state_details.flow_run_id, 3)}
    assert runs["tolerant"].state.is_completed() and runs["strict"].state.is_failed()
    records = flow_run_log_records(state.state_details.flow_run_id)
    tolerant = [r.message for r in records if r.task_run_id == runs["tolerant"].id and r.level >= logging.ERROR]
    assert len(tolerant) == 1 and re.match(r"Job naps-\S+ CANCELLED after \d+\.\d s\. Its whole log", tolerant[0])


def test_job_block_is_saved_loaded_and_triggered(engine, tmp_path):
    source = tmp_path / "algorithm.py"
    source.write_text(
        "from prefect_braket.jobs import log_metric\n"
        "def main(steps: int):\n"
        "    for i in range(steps):\n"
        "        log_metric(metric_name='loss', value=1.0 / (i + 1), iteration_number=i)\n"
        "    from prefect_braket.jobs import save_job_result\n"
        "    save_job_result({'steps': steps})\n"
    )
    BraketHybridJob(
        source_module=str(source), entry_point="algorithm:main", hyperparameters={"steps": "3"},
        engine_home=str(engine.root), poll_interval_seconds=0.2,
    ).save("nightly-training", overwrite=True)

    @flow
    async def triggered():
        block = await BraketHybridJob.load("nightly-training")
        run = await block.trigger()
        await run.wait_for_completion()
        return run.job, await run.fetch_result()

    job, result = asyncio.run(triggered())
    assert result == {"steps": 3}
    assert job.name.startswith("algorithm-")
    assert job.metrics("iteration_number")["loss"] == pytest.approx([1.0, 0.5, 1 / 3])


def test_handle_pickles_and_reattaches(engine):
    import pickle

    job = train(num_tasks=1)
    copy = pickle.loads(pickle.dumps(job))
    assert copy == job and isinstance(copy, HybridJob)
    assert copy.result() == {"final_theta": pytest.approx(0.1)}


STOPPED_FLOW = """
import sys, time
from prefect import flow
from prefect_braket import hybrid_job

@hybrid_job(device="local:braket/braket_sv")
def long_job():
    time.sleep(120)

@flow
def experiment():
    job = long_job()
    print(job.arn, flush=True)
    job.result(poll_interval_seconds=0.2)

experiment()
"""


def test_stopping_the_flow_process_cancels_its_job(engine, tmp_path):
    """A deployment's flow run is cancelled by SIGTERM to its process; its job must not run on."""
    import os
    import signal
    import subprocess
    import sys

    from prefect.settings import PREFECT_API_URL

    script = tmp_path / "stopped_flow.py"
    script.write_text(STOPPED_FLOW)
    env = dict(os.environ, PREFECT_API_URL=PREFECT_API_URL.value(), PREFECT_BRAKET_HOME=str(engine.root))
    process = subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.PIPE, text=True)
    try:
        arn = process.stdout.readline().strip()
        job = HybridJob.attach(arn, engine)
        wait_for(lambda: job.state() == "RUNNING", timeout=30)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    finally:
        process.kill()
    meta = job.wait_until_complete(timeout_seconds=15, poll_interval_seconds=0.1)
    assert meta["status"] == "CANCELLED"
    assert not pid_alive(engine.process_ids(arn)["process_group"])


def test_shipped_block_documents_save_and_run(engine, monkeypatch):
    import importlib.util

    repo = REPO
    monkeypatch.chdir(repo)  # the documents name their sources relative to the repository
    spec = importlib.util.spec_from_file_location("save_blocks", repo / "blocks" / "save_blocks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    saved = module.save_all(repo / "blocks", overwrite=True)
    assert {"braket-hybrid-job/example-training", "braket-device/local-sv", "braket-device/sv1",
            "braket-device/ionq-forte"} <= set(saved)
    from prefect_braket import BraketDevice

    forte = BraketDevice.load("ionq-forte")
    assert forte.region == "us-east-1" and forte.resolve_shots(None) == 100 and forte.max_cost_usd == 50.0
    assert BraketDevice.load("local-sv").run(
        "OPENQASM 3.0;\nqubit[1] q;\nx q[0];\n#pragma braket result probability\n").values[0].tolist() == [0.0, 1.0]

    block = BraketHybridJob.load("example-training")
    block.engine_home = str(engine.root)
    run = asyncio.run(block.trigger())
    asyncio.run(run.wait_for_completion())
    assert asyncio.run(run.fetch_result()) == {"final_theta": pytest.approx(0.5)}
