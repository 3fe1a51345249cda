"""What a hybrid job's own code calls while it runs, under Braket's names and formats.

These are drop-in twins of `braket.jobs` and `braket.jobs.metrics`: they read the same
`AMZN_BRAKET_*` variables and write the same files and lines, so a checkpoint, a result or a
metric line written here loads in Braket's SDK and the reverse.

This package is the in-job runtime: it uses the standard library only, imports nothing else
of prefect-braket, and travels by value inside the pickles of `hybrid_job` functions, so it
imports fast inside a job process and runs unchanged in Braket's own container, where this
package need not be installed. One small module per concern, as in `braket/jobs/`:

- `environment`: the job's name, device, hyperparameters and directories;
- `data_persistence`: checkpoints and results (`PersistedJobData`);
- `metrics`: `log_metric`;
- `budget`: spending ledgers and a job's `max_cost_usd`;
- `entry`: what a decorated function's entry point runs.

Example:
    ```python
    from prefect_braket.jobs import load_job_checkpoint, log_metric, save_job_checkpoint

    def train(iterations: int = 10):
        try:
            state = load_job_checkpoint()
        except FileNotFoundError:
            state = {"theta": 0.0, "i": 0}
        for i in range(state["i"], iterations):
            state = {"theta": state["theta"] + 0.1, "i": i + 1}
            log_metric(metric_name="theta", value=state["theta"], iteration_number=i)
            save_job_checkpoint(state)
        return {"theta": state["theta"]}
    ```
"""

from prefect_braket.jobs.data_persistence import (
    PersistedJobDataFormat,
    load_job_checkpoint,
    load_job_result,
    save_job_checkpoint,
    save_job_result,
)
from prefect_braket.jobs.environment import (
    get_checkpoint_dir,
    get_hyperparameters,
    get_input_data_dir,
    get_job_device_arn,
    get_job_name,
    get_results_dir,
)
from prefect_braket.jobs.metrics import log_metric

# Braket's own helpers (`braket.jobs`), under its names; the modules hold what the package around
# the job uses besides.
__all__ = [
    "PersistedJobDataFormat",
    "get_checkpoint_dir",
    "get_hyperparameters",
    "get_input_data_dir",
    "get_job_device_arn",
    "get_job_name",
    "get_results_dir",
    "load_job_checkpoint",
    "load_job_result",
    "log_metric",
    "save_job_checkpoint",
    "save_job_result",
]
