"""A flow for the work-pool tests (tests/integration/orchestration/test_work_pools.py): one hybrid job
on a QPU, held to one job at a time on the device by its Prefect global concurrency limit.

It runs on whichever worker takes it, so it names the machine it ran on, by that machine's
`PREFECT_BRAKET_HOME`, in the job's tags and arguments: the tests read them back from the
Braket service, and from another machine's environment.
"""

import os

from prefect import flow

from prefect_braket import hybrid_job

FORTE = "arn:aws:braket:us-east-1::device/qpu/ionq/Forte-1"
ROLE = "arn:aws:iam::123456789012:role/service-role/AmazonBraketJobsExecutionRole"
PROGRAM = "OPENQASM 3.0;\nbit[1] b;\nqubit[1] q;\nx q[0];\nb[0] = measure q[0];"


def measure(index: int, submitted_from: str) -> dict:
    # Braket's task API directly rather than BraketDevice (a Prefect block): the job then need not
    # import Prefect, which takes seconds of a loaded machine's time in each of the jobs run in turn.
    from prefect_braket.backends.aws.backend import AwsBackend
    from prefect_braket.jobs import get_job_device_arn, log_metric
    from prefect_braket.quantum.devices import create_quantum_task_request, job_priority_token
    from prefect_braket.quantum.programs import Program

    device, backend = get_job_device_arn(), AwsBackend()
    request = create_quantum_task_request(device, Program(PROGRAM), 10, backend.default_bucket(), "jobs/tasks",
                                          job_priority_token(device))
    (task, result), = backend.run_quantum_tasks([request], poll_interval_seconds=0.2)
    ones = sum(bits == [1] for bits in result["measurements"])
    log_metric(metric_name="ones", value=ones, iteration_number=index)
    return {"index": index, "submitted_from": submitted_from, "ones": ones,
            "priority": task["queueInfo"]["queuePriority"]}


@flow(name="qpu-job")
def qpu_job(index: int) -> str:
    home = os.environ["PREFECT_BRAKET_HOME"]
    job = hybrid_job(device=FORTE, role_arn=ROLE, tags={"submitted-from": home},
                     device_concurrency_limit=True)(measure)(index, home)
    return job.arn
