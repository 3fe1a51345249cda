"""What a `hybrid_job` function's entry point runs inside the job: its call, its result, its budget.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from prefect_braket.jobs.budget import JobBudget
from prefect_braket.jobs.data_persistence import save_job_result
from prefect_braket.jobs.environment import get_input_data_dir, get_results_dir


def _link_input(input_paths: dict[str, str]) -> list[Path]:
    # Relative input paths keep working inside the job: they point into its input channels.
    links = []
    for channel, original in input_paths.items():
        channel_dir = Path(get_input_data_dir(channel))
        inside = channel_dir / Path(original).name
        target = inside if inside.exists() and not inside.is_dir() else channel_dir
        link = Path(original)
        if link.is_absolute() or link.exists() or link.is_symlink():
            continue
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(target.resolve())
        links.append(link)
    return links


def run_decorated_function(
    call: Any, input_paths: dict[str, str], data_format: str, budget: dict[str, float] | None = None
) -> Any:
    """What a `hybrid_job` function's entry point runs inside the job.

    The call runs with the results directory as working directory (files it writes to relative
    paths end up in `model.tar.gz`), and its return value becomes the job's result. It travels
    pickled by value with the function, so the job needs neither this package nor Braket's SDK.
    `budget` (`max_cost_usd`, `instance_usd_per_hour`) starts the job's `JobBudget` first.
    """
    if budget:
        JobBudget.start(**budget)
    os.chdir(get_results_dir())
    links = _link_input(input_paths)
    try:
        result = call()
    finally:
        for link in links:
            link.unlink()
    if result is not None:
        save_job_result(result, data_format=data_format)
    return result
