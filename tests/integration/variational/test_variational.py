"""Variational loops as flows: VQE accuracy, resuming, artifacts, async flows, publishing errors, and in a job."""

import asyncio
import base64
import json
import re
import sys
import time

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.context import SyncClientContext

from helpers.paths import FLOWS
from helpers.runs import all_artifacts, latest_artifacts
from helpers.waiting import wait_for

sys.path.insert(0, str(FLOWS))

from resume_demo import DeviceLost, interrupted_vqe_h2  # noqa: E402
from vqe_h2 import ANSATZ, CHEMICAL_ACCURACY, H2_HAMILTONIAN, vqe_h2  # noqa: E402

from prefect_braket import get_job_result, hybrid_job, wait_for_job  # noqa: E402
from prefect_braket.orchestration.context import artifact_key  # noqa: E402
from prefect_braket.variational import (  # noqa: E402
    SPSA,
    Observable,
    ParametricCost,
    publishing,
    run_variational,
    run_variational_in_job,
)
from prefect_braket.variational.checkpoints import load_checkpoint  # noqa: E402


def run_vqe_h2(**parameters):
    """The example flow is async: runs it to the end from these sync tests."""
    return asyncio.run(vqe_h2(**parameters))


def group_starts(flow_run_id, experiment_id):
    """The iterations the flow run's groups (`variational-iterations` task runs) started at, once recorded."""
    prefix = f"{experiment_id}-iterations-from-"

    def read():
        with get_client(sync_client=True) as client:
            runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
        groups = [run for run in runs if run.name.startswith(prefix)]
        if groups and all(run.state and run.state.is_final() for run in groups):
            return sorted(int(run.name.removeprefix(prefix)) for run in groups)
        return None

    return wait_for(read, timeout=20)


def test_vqe_reaches_chemical_accuracy_and_shows_it(tmp_path):
    state = run_vqe_h2(experiment_id="vqe-accuracy", checkpoint_location=str(tmp_path), return_state=True)
    result = state.result()
    assert result["exact_energy"] == pytest.approx(-1.1373060357534)  # H2, STO-3G, 0.735 Å, with nuclear repulsion
    assert abs(result["energy"] - result["exact_energy"]) < CHEMICAL_ACCURACY
    assert result["chemical_accuracy"] and 3 <= result["iterations"] <= 40
    artifacts = latest_artifacts(state.state_details.flow_run_id)
    assert artifacts["vqe-accuracy-progress"].data == 100.0
    assert artifacts["vqe-accuracy-progress"].description.startswith(
        f"Finished vqe-accuracy after iteration {result['iterations'] - 1}: energy {result['energy']:.8f}")
    # One version of each key, so one card each in the run's Artifacts tab, however many iterations ran.
    assert sorted(a.key for a in all_artifacts(state.state_details.flow_run_id)) == [
        "vqe-accuracy-iterations", "vqe-accuracy-progress", "vqe-accuracy-summary"]
    table = json.loads(artifacts["vqe-accuracy-iterations"].data)
    assert [row["iteration"] for row in table] == list(range(result["iterations"]))
    assert table[-1]["energy"] == pytest.approx(result["energy"])
    summary = artifacts["vqe-accuracy-summary"].data
    svg = base64.b64decode(re.search(r"data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)", summary).group(1)).decode()
    assert svg.startswith("<svg") and svg.count(",") >= result["iterations"]  # one point per iteration
    assert f"{result['energy']:.8f}" in summary
    checkpoint = json.loads((tmp_path / "vqe-accuracy.json").read_text())
    assert checkpoint["braketSchemaHeader"]["name"] == "braket.jobs_data.persisted_job_data"
    assert len(checkpoint["dataDictionary"]["history"]) == result["iterations"]


def test_resumed_run_evaluates_each_iteration_once(tmp_path):
    first = asyncio.run(interrupted_vqe_h2(fail_at=4, experiment_id="resume-once", checkpoint_location=str(tmp_path),
                                           return_state=True))
    assert first.is_failed()
    with pytest.raises(DeviceLost):
        first.result()
    assert len(load_checkpoint(str(tmp_path), "resume-once")["history"]) == 4
    failed = latest_artifacts(first.state_details.flow_run_id)  # what the failed run leaves is its table, once
    assert [row["iteration"] for row in json.loads(failed["resume-once-iterations"].data)] == [0, 1, 2, 3]
    assert failed["resume-once-progress"].description.startswith("Failed after iteration 3 of resume-once: DeviceLost")
    assert "resume-once-summary" not in failed
    second = run_vqe_h2(experiment_id="resume-once", checkpoint_location=str(tmp_path), return_state=True)
    result = second.result()
    assert result["evaluated_iterations"] == result["iterations"] - 4
    assert abs(result["energy"] - result["exact_energy"]) < CHEMICAL_ACCURACY
    # It resumed after iteration 3: its first group of iterations started at 4. (A run that started over
    # would have asked for a group from 0, and got 0-3 back from the cache.)
    assert group_starts(second.state_details.flow_run_id, "resume-once")[0] == 4
    third = run_vqe_h2(experiment_id="resume-once", checkpoint_location=str(tmp_path))
    assert third["evaluated_iterations"] == 0 and third["energy"] == result["energy"]


def test_iterations_are_cached_even_without_the_checkpoint(tmp_path):
    """A crash between an iteration and its checkpoint costs nothing: the iteration comes from the cache."""
    cost = ParametricCost(ANSATZ, H2_HAMILTONIAN, ["theta"])

    @flow
    def short(location: str):
        return run_variational(cost, [0.0], experiment_id="cache-only", checkpoint_location=location,
                               max_iterations=3, optimizer=SPSA(seed=3))

    first = short(str(tmp_path / "a"))
    second = short(str(tmp_path / "b"))  # an empty checkpoint location: starts over, but from the cache
    assert first["evaluated_iterations"] == 3 and second["evaluated_iterations"] == 0
    assert second["energy"] == first["energy"]


def test_runs_inside_an_async_flow(tmp_path):
    """Sync task runs and artifacts from an async flow (vqe_h2 is one) and from a sync flow: the same results."""
    cost = ParametricCost(ANSATZ, H2_HAMILTONIAN, ["theta"])

    @flow
    async def in_async_flow():
        return run_variational(cost, [0.0], experiment_id="async-flow", checkpoint_location=str(tmp_path),
                               learning_rate=0.4, max_iterations=6, tolerance=0.0)

    state = asyncio.run(in_async_flow(return_state=True))
    result = state.result()
    assert result["iterations"] == result["evaluated_iterations"] == 6

    @flow
    def in_sync_flow():
        return run_variational(cost, [0.0], experiment_id="sync-flow", checkpoint_location=str(tmp_path),
                               learning_rate=0.4, max_iterations=6, tolerance=0.0)

    assert result["energy"] == in_sync_flow()["energy"]
    artifacts = latest_artifacts(state.state_details.flow_run_id)
    assert artifacts["async-flow-progress"].data == 100.0
    assert len(json.loads(artifacts["async-flow-iterations"].data)) == 6
    assert "async-flow-summary" in artifacts
    assert len(load_checkpoint(str(tmp_path), "async-flow")["history"]) == 6


def test_async_flow_runs_in_one_process_share_an_api_client(tmp_path):
    """A new API client costs tens of milliseconds (TLS certificates): later runs keep the first's."""
    clients = []

    def cost(device, parameters, shots):
        clients.append(SyncClientContext.get().client)  # the client of the task run evaluating it
        return float(parameters[0] ** 2)

    @flow
    async def quadratic(experiment_id: str):
        return run_variational(cost, [0.5], experiment_id=experiment_id, checkpoint_location=str(tmp_path),
                               max_iterations=2, tolerance=0.0)

    for experiment_id in ("shared-client-a", "shared-client-b"):
        assert asyncio.run(quadratic(experiment_id))["evaluated_iterations"] == 2
    assert len(clients) == 12 and all(client is clients[0] for client in clients)  # 3 points an iteration
    assert SyncClientContext.get() is None


def test_a_failing_checkpoint_store_fails_the_run_early(tmp_path, monkeypatch):
    """Checkpoints are written off the loop's thread; a write that fails still stops the loop and fails the flow."""
    def refuse(*args):
        raise PermissionError("the checkpoint store refused the write")

    monkeypatch.setattr(publishing, "save_checkpoint", refuse)
    evaluations = []

    def cost(device, parameters, shots):
        evaluations.append(parameters)
        time.sleep(0.005)  # an iteration's work: 200 of them take seconds, the refused write milliseconds
        return float(parameters[0] ** 2)

    @flow
    def refused():
        return run_variational(cost, [1.0], experiment_id="refused", checkpoint_location=str(tmp_path),
                               max_iterations=200, tolerance=0.0)

    state = refused(return_state=True)
    assert state.is_failed()
    with pytest.raises(PermissionError, match="refused the write"):
        state.result()
    assert len(evaluations) < 3 * 100  # stopped after the first iterations, not at the end


def test_bad_variational_input():
    with pytest.raises(ValueError, match="Pauli strings of one length"):
        Observable.from_dict({"XZ": 1.0, "Z": 2.0})

    @flow
    def bad():
        return run_variational(ParametricCost(ANSATZ, H2_HAMILTONIAN, ["theta"]), [0.0], experiment_id="Bad_Id")

    with pytest.raises(ValueError, match="experiment_id 'Bad_Id'.*'bad-id'"):
        bad()


@hybrid_job(device="local:braket/braket_sv")
def vqe_in_job(max_iterations: int = 6):
    return run_variational_in_job(ParametricCost(ANSATZ, H2_HAMILTONIAN, ["theta"]), [0.0], learning_rate=0.4,
                                  max_iterations=max_iterations, tolerance=0.0)


def test_the_same_loop_inside_a_job_publishes_the_same_metrics(engine, tmp_path):
    @flow
    def in_job():
        job = vqe_in_job(max_iterations=6)
        wait_for_job(job, poll_interval_seconds=0.5)
        return job, get_job_result(job)

    state = in_job(return_state=True)
    job, result = state.result()
    table = json.loads(latest_artifacts(state.state_details.flow_run_id)[f"{artifact_key(job.name)}-metrics"].data)
    assert table["iteration_number"] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    in_flow = run_vqe_h2(experiment_id="same-metrics", checkpoint_location=str(tmp_path), max_iterations=6,
                         tolerance=0.0)
    history = load_checkpoint(str(tmp_path), "same-metrics")["history"]
    assert table["energy"] == pytest.approx([h["energy"] for h in history])
    assert result["energy"] == pytest.approx(in_flow["energy"])
    checkpoint = engine.job_directory(job.arn) / "checkpoints" / f"{job.name}.json"
    assert len(json.loads(checkpoint.read_text())["dataDictionary"]["history"]) == 6


def test_scipy_minimizer_reaches_accuracy_and_replays_on_resume(tmp_path):
    first = asyncio.run(interrupted_vqe_h2(fail_at=5, experiment_id="cobyla", checkpoint_location=str(tmp_path),
                                           optimizer="scipy:COBYLA", return_state=True))
    assert first.is_failed()
    with pytest.raises(DeviceLost):
        first.result()
    result = run_vqe_h2(experiment_id="cobyla", checkpoint_location=str(tmp_path), optimizer="scipy:COBYLA")
    assert abs(result["energy"] - result["exact_energy"]) < CHEMICAL_ACCURACY
    assert result["evaluated_iterations"] == result["iterations"] - 5  # the first five were replayed


def test_checkpoints_to_an_s3_prefix_and_resumes_from_them(moto_endpoint, monkeypatch):
    import uuid

    import boto3
    import s3fs

    for name, value in {"AWS_ENDPOINT_URL": moto_endpoint, "AWS_ACCESS_KEY_ID": "testing",
                        "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    s3fs.S3FileSystem.clear_instance_cache()  # a file system made earlier may point elsewhere
    bucket = f"checkpoints-{uuid.uuid4().hex[:12]}"  # a bucket of this test's own on the shared moto server
    boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
    location = f"s3://{bucket}/experiments"
    cost = ParametricCost(ANSATZ, H2_HAMILTONIAN, ["theta"])

    @flow
    def short(iterations: int):
        return run_variational(cost, [0.0], experiment_id=f"s3-{bucket}", checkpoint_location=location,
                               max_iterations=iterations, optimizer=SPSA(seed=5))

    first = short(2)
    saved = load_checkpoint(location, f"s3-{bucket}")
    assert first["iterations"] == 2 and len(saved["history"]) == 2
    objects = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1").list_objects_v2(Bucket=bucket)
    assert [o["Key"] for o in objects["Contents"]] == [f"experiments/s3-{bucket}.json"]
    state = short(4, return_state=True)
    second = state.result()
    assert second["iterations"] == 4 and len(load_checkpoint(location, f"s3-{bucket}")["history"]) == 4
    # Resumed from the checkpoint in S3, the run does not even ask for iterations 0 and 1 (a run that
    # started over would get them from the cache, in a group from 0).
    assert group_starts(state.state_details.flow_run_id, f"s3-{bucket}") == [2]
