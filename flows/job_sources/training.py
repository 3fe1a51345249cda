"""A hybrid job's source as a plain module: Braket binds its hyperparameters to `main`'s arguments."""

from prefect_braket.jobs import log_metric, save_job_checkpoint, save_job_result


def main(num_iterations: int = 5, learning_rate: float = 0.1) -> None:
    theta = 0.0
    for i in range(num_iterations):
        theta += learning_rate
        log_metric(metric_name="theta", value=theta, iteration_number=i)
        save_job_checkpoint({"theta": theta, "i": i + 1})
    save_job_result({"final_theta": theta})
