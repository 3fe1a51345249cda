"""`log_metric`: Braket's metric lines (`Metrics - timestamp=...; name=value; iteration_number=...;`).
"""

from __future__ import annotations

import math
import re
import time

METRIC_NAME = re.compile(r"^\w+$")


def format_metric_line(
    metric_name: str, value: float, timestamp: float | None = None, iteration_number: int | None = None
) -> str:
    """The `Metrics - …` line that Braket's metric parsers read."""
    if not METRIC_NAME.match(metric_name or ""):
        raise ValueError(
            f"Metric name {metric_name!r} must be letters, digits and underscores: Braket's parser "
            f"reads only \\w+ (try {re.sub(r'[^0-9A-Za-z_]+', '_', str(metric_name)) or 'value'!r})."
        )
    if isinstance(value, bool) or not isinstance(value, (int, float)) and not hasattr(value, "__float__"):
        raise TypeError(f"Metric {metric_name!r} needs a number, got {value!r}.")
    if math.isnan(float(value)):
        raise ValueError(f"Metric {metric_name!r} is NaN, which no metric parser keeps.")
    line = f"Metrics - timestamp={timestamp if timestamp is not None else time.time()}; {metric_name}={value};"
    if iteration_number is not None:
        line += f" iteration_number={iteration_number};"
    return line


def log_metric(
    metric_name: str, value: float, timestamp: float | None = None, iteration_number: int | None = None
) -> None:
    """Records one metric value by printing Braket's metric line to the job's log.

    Example:
        `log_metric(metric_name="energy", value=-1.13, iteration_number=3)` prints
        `Metrics - timestamp=1700000000.0; energy=-1.13; iteration_number=3;`
    """
    print(format_metric_line(metric_name, value, timestamp, iteration_number), flush=True)
