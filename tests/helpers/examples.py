"""The decorator example of the README, undecorated, for tests to decorate as they need."""

from prefect_braket.jobs import log_metric, save_job_checkpoint


def train(num_tasks: int = 1, lr: float = 0.1):
    theta = 0.0
    for i in range(num_tasks):
        theta += lr
        log_metric(metric_name="theta", value=theta, iteration_number=i)
        save_job_checkpoint({"theta": theta, "i": i})
    return {"final_theta": theta}
