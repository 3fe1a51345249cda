"""The reliability suite: one Prefect flow runs 100 quantum tasks and 5 hybrid jobs on the AWS path,
against the local endpoint over real HTTP, with 30% of Braket calls throttled and one job's
instance killed mid-run. It reports what it took; the run fails if anything was lost or duplicated."""

import asyncio
import math
import time

import boto3
import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect_aws import AwsCredentials

from helpers.reports import REPORTS
from helpers.servers import endpoint_control
from prefect_braket import BraketDevice, hybrid_job, run_quantum_batch

SV1 = "arn:aws:braket:::device/quantum-simulator/amazon/sv1"
ROLE = "arn:aws:iam::123456789012:role/service-role/AmazonBraketJobsExecutionRole"
PROGRAM = """OPENQASM 3.0;
input float theta;
qubit[1] q;
rx(theta) q[0];
#pragma braket result expectation z(q[0])
"""
BATCHES, BATCH_SIZE, JOBS, STEPS = 10, 10, 5, 4
DYING_JOB = "reliability-2"


def stepper(theta0: float = 0.0, steps: int = STEPS, pause: float = 0.4):
    """A job that evaluates one circuit per step on its device (with priority) and checkpoints
    after each; restarted from a checkpoint, it goes on where it stopped."""
    import time

    from prefect_braket.backends.aws.backend import AwsBackend
    from prefect_braket.jobs import (
        get_job_device_arn,
        load_job_checkpoint,
        log_metric,
        save_job_checkpoint,
    )
    from prefect_braket.quantum.devices import (
        create_quantum_task_request,
        job_priority_token,
    )
    from prefect_braket.quantum.programs import Program

    try:
        state = load_job_checkpoint()
    except FileNotFoundError:
        state = {"values": [], "runs": 0}
    state["runs"] += 1
    device, backend = get_job_device_arn(), AwsBackend()
    for i in range(len(state["values"]), steps):
        program = Program(PROGRAM, {"theta": theta0 + 0.3 * i})
        request = create_quantum_task_request(device, program, 0, backend.default_bucket(), "jobs/tasks",
                                              job_priority_token(device))
        ((_, result),) = backend.run_quantum_tasks([request], poll_interval_seconds=0.2)
        state["values"].append(result["resultTypes"][0]["value"])
        log_metric(metric_name="value", value=state["values"][-1], iteration_number=i)
        save_job_checkpoint(state)
        time.sleep(pause)
    return state


@flow
def tasks_and_jobs(device: BraketDevice, backend) -> dict:
    jobs = [hybrid_job(device=SV1, backend=backend, role_arn=ROLE, job_name=f"reliability-{k}")(stepper)(theta0=k)
            for k in range(JOBS)]
    batches = [run_quantum_batch.submit(device, [PROGRAM] * BATCH_SIZE,
                                        inputs=[{"theta": 0.01 * (b * BATCH_SIZE + i)} for i in range(BATCH_SIZE)],
                                        shots=0)
               for b in range(BATCHES)]
    results = [r for batch in batches for r in batch.result()]
    job_results = [job.result(poll_interval_seconds=0.5) for job in jobs]  # a replaced job's handle follows it
    return {"tasks": [(r.task_arn, r.values[0]) for r in results],
            "jobs": [(job.first_arn, job.replaced, job.arn, result)
                     for job, result in zip(jobs, job_results, strict=True)]}


def test_tasks_and_jobs_survive_throttling_and_a_dying_instance(endpoint, monkeypatch):
    from prefect_braket.backends.aws.backend import AwsBackend

    credentials = AwsCredentials(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1",
                                 aws_client_parameters={"endpoint_url": endpoint})
    session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
    backend = AwsBackend(session=session, region="us-east-1", endpoint_url=endpoint)
    backend.default_bucket()  # set-up outside the faults: S3 is not what is tested here
    endpoint_control(endpoint, "faults", {"throttle_rate": 0.3, "seed": 7,
                                          "job_deaths": [{"job_name_prefix": DYING_JOB, "after_checkpoints": 2}]})
    started = time.monotonic()
    try:
        state = tasks_and_jobs(BraketDevice(device_arn=SV1, aws_credentials=credentials), backend, return_state=True)
    finally:
        stats = endpoint_control(endpoint, "stats")
        endpoint_control(endpoint, "faults", {})
    elapsed = time.monotonic() - started
    outcome = state.result()

    # Every task completed with the right value, each created once.
    thetas = [0.01 * n for n in range(BATCHES * BATCH_SIZE)]
    assert [value for _, value in outcome["tasks"]] == pytest.approx([math.cos(t) for t in thetas])
    assert len({arn for arn, _ in outcome["tasks"]}) == BATCHES * BATCH_SIZE
    # Every job completed all its steps; the dying one was replaced once, from its checkpoint.
    braket = backend.braket()
    replaced = {}
    for k, (first, lineage, final, result) in enumerate(outcome["jobs"]):
        assert result["values"] == pytest.approx([math.cos(k + 0.3 * i) for i in range(STEPS)])
        replaced[k] = lineage
        if k == 2:
            assert result["runs"] == 2 and lineage == [first] and final != first  # resumed, not restarted
            lost = braket.get_job(jobArn=first)
            assert lost["status"] == "FAILED" and lost["failureReason"].startswith("InternalServerError")
        else:
            assert result["runs"] == 1 and lineage == [] and final == first
    names = sorted(j["jobName"] for j in braket.search_jobs(filters=[])["jobs"])
    assert names == sorted([f"reliability-{k}" for k in range(JOBS)] + [f"{DYING_JOB}-r1"])  # no duplicate job
    assert stats["jobs_created"] == JOBS + 1 and stats["jobs_killed"] == 1
    # Only the step the dying job had not checkpointed may have been evaluated twice.
    job_tasks = stats["tasks_created"] - BATCHES * BATCH_SIZE
    assert JOBS * STEPS <= job_tasks <= JOBS * STEPS + 1
    assert stats["throttled"] > 0

    async def task_run_retries() -> int:
        async with get_client() as client:
            runs = await client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id])))
        return sum(max(run.run_count - 1, 0) for run in runs)

    tasks_right = sum(math.isclose(value, math.cos(t), abs_tol=1e-9)
                      for (_, value), t in zip(outcome["tasks"], thetas, strict=True))
    jobs_right = sum(len(result["values"]) == STEPS for _, _, _, result in outcome["jobs"])
    REPORTS.append(("reliability: 100 quantum tasks + 5 hybrid jobs, 30% of Braket calls throttled, one instance "
                    "killed", {
        "tasks_completed_with_right_values": tasks_right, "jobs_completed_all_steps": jobs_right,
        "jobs_created": stats["jobs_created"], "job_names_created_twice": len(names) - len(set(names)),
        "braket_calls": stats["calls"], "throttled_calls_retried_by_botocore": stats["throttled"],
        "prefect_task_run_retries": asyncio.run(task_run_retries()),
        "jobs_resubmitted_after_instance_loss": sum(len(lineage) for lineage in replaced.values()),
        "client_token_deduplications": stats["tasks_deduplicated"] + stats["jobs_deduplicated"],
        "job_tasks_evaluated_twice": job_tasks - JOBS * STEPS, "wall_seconds": round(elapsed, 1),
    }))
