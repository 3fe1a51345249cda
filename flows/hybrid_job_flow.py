"""A hybrid job on the embedded engine, run as a Prefect flow.

    python flows/hybrid_job_flow.py            # prints the job's result as its last line

The job logs a metric per iteration and checkpoints as it goes; in the Prefect UI the flow run
shows the submission and the wait as task runs, the job's log lines, and its metrics as a
progress bar and a table. To run it on Amazon Braket, change `device` to a device ARN.
"""

import json
import os

# Prefect's temporary server takes 20-40 s to start on a small machine; its default wait is 20 s.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")

from prefect import flow  # noqa: E402

from prefect_braket import hybrid_job  # noqa: E402
from prefect_braket.jobs import load_job_checkpoint, log_metric, save_job_checkpoint  # noqa: E402


@hybrid_job(device="local:braket/braket_sv")
def train(num_tasks: int = 5, lr: float = 0.1):
    """Moves theta by `lr` per iteration, resuming from its checkpoint if it has one."""
    try:
        state = load_job_checkpoint()
    except FileNotFoundError:
        state = {"theta": 0.0, "i": 0}
    theta = state["theta"]
    for i in range(state["i"], num_tasks):
        theta += lr
        log_metric(metric_name="theta", value=theta, iteration_number=i)
        save_job_checkpoint({"theta": theta, "i": i + 1})
    return {"final_theta": theta}


@flow(name="braket-hybrid-job", log_prints=True)
def hybrid_job_flow(num_tasks: int = 5, lr: float = 0.1) -> dict:
    """Submits the training job, waits for it (its log and metrics show in the UI) and returns its result.

    Args:
        num_tasks: Iterations of the job.
        lr: How far theta moves per iteration.
    """
    job = train(num_tasks=num_tasks, lr=lr)
    result = job.result(poll_interval_seconds=1.0)
    print(f"Job {job.name} ({job.arn}) finished: {result}")
    return {"job_arn": job.arn, **result}


if __name__ == "__main__":
    print(json.dumps(hybrid_job_flow()))
