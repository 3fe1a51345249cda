"""Where a job's code finds its name, device, data and directories: Braket's `AMZN_BRAKET_*` variables.

The same names and defaults as `braket.jobs` (outside a job each helper returns Braket's default).
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def get_job_name() -> str:
    """The name of the running job, or "" outside a job."""
    return os.getenv("AMZN_BRAKET_JOB_NAME", "")


def get_job_device_arn() -> str:
    """The ARN of the job's device, whose tasks get the job's priority ("local:none/none" outside a job)."""
    return os.getenv("AMZN_BRAKET_DEVICE_ARN", "local:none/none")


def get_input_data_dir(channel: str = "input") -> str:
    """The directory holding the files of an input-data channel ("." outside a job)."""
    input_dir = os.getenv("AMZN_BRAKET_INPUT_DIR", ".")
    return f"{input_dir}/{channel}" if input_dir != "." else input_dir


def get_results_dir() -> str:
    """The directory whose files are packed into the job's `model.tar.gz`."""
    return os.getenv("AMZN_BRAKET_JOB_RESULTS_DIR", ".")


def get_checkpoint_dir() -> str:
    """The directory checkpoints are written to and kept in."""
    return os.getenv("AMZN_BRAKET_CHECKPOINT_DIR", ".")


def get_hyperparameters() -> dict[str, str]:
    """The job's hyperparameters, as strings, as they were submitted."""
    path = os.getenv("AMZN_BRAKET_HP_FILE")
    if not path:
        return {}
    with open(path) as f:
        return json.load(f)


FAILURE_FILE = "output/failure"  # under the instance: what the container turns into failureReason


BRAKET_INSTANCE = "/opt/ml"  # Braket's container's instance directory


def failure_file() -> Path:
    """Where this job's failure reason goes: the embedded engine's instance, or Braket's container's."""
    return Path(os.environ.get("PREFECT_BRAKET_INSTANCE_DIR") or BRAKET_INSTANCE) / FAILURE_FILE
