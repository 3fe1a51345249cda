"""Reads the `Metrics - …` lines of a job's log into Braket's column dictionary.

The rules are those of Braket's `LogMetricsParser`: `name=value;` pairs whose values parse as
floats, a `[node]` prefix that adds a `node_id` column, rows keyed by the pivot column
(timestamp or iteration_number) and node, and conflicts in a row settled by max or min.
Both backends feed their log lines through `MetricsParser`, as the lines arrive.

Example:
    ```python
    parser = MetricsParser()
    parser.feed("Metrics - timestamp=1.0; energy=-0.5; iteration_number=0;")
    parser.table()   # {"timestamp": [1.0], "energy": [-0.5], "iteration_number": [0.0]}
    ```
"""

from __future__ import annotations

import re
from typing import Literal

METRIC_PAIR = re.compile(r"(\w+)\s*=\s*([^;]+)\s*;")
NODE_TAG = re.compile(r"^\[([^\]]*)\]")
MARKER = "Metrics -"

MetricType = Literal["timestamp", "iteration_number"]
Statistic = Literal["max", "min"]


def parse_metric_line(line: str, fallback_timestamp: float | None = None) -> dict[str, float | str] | None:
    """One metric line as a row ({} pairs that are not numbers are dropped); None for other lines."""
    if MARKER not in line:
        return None
    row: dict[str, float | str] = {}
    for name, value in METRIC_PAIR.findall(line):
        try:
            row[name] = float(value)
        except ValueError:
            continue
    if not row:
        return None
    if "timestamp" not in row and fallback_timestamp is not None:
        row["timestamp"] = fallback_timestamp
    node = NODE_TAG.match(line)
    if node:
        row["node_id"] = node.group(1)
    return row


class MetricsParser:
    """Collects metric rows from log lines and pivots them into columns."""

    def __init__(self) -> None:
        self.rows: list[dict[str, float | str]] = []

    def feed(self, line: str, fallback_timestamp: float | None = None) -> dict[str, float | str] | None:
        """Parses one log line; returns its row if it was a metric line."""
        row = parse_metric_line(line, fallback_timestamp)
        if row is not None:
            self.rows.append(row)
        return row

    def table(
        self, metric_type: MetricType = "timestamp", statistic: Statistic = "max"
    ) -> dict[str, list[float | str | None]]:
        """Columns as Braket's `AwsQuantumJob.metrics()` returns them, padded with None."""
        if metric_type not in ("timestamp", "iteration_number"):
            raise ValueError(f"metric_type {metric_type!r} must be 'timestamp' or 'iteration_number'.")
        if statistic not in ("max", "min"):
            raise ValueError(f"statistic {statistic!r} must be 'max' or 'min'.")
        pick = max if statistic == "max" else min
        index: dict[tuple, int] = {}
        merged: list[dict[str, float | str]] = []
        columns: dict[str, None] = {}
        for row in self.rows:
            if metric_type not in row:
                continue
            key = (row[metric_type], row.get("node_id"))
            if key not in index:
                index[key] = len(merged)
                merged.append({})
            target = merged[index[key]]
            for name, value in row.items():
                columns.setdefault(name)
                target[name] = value if name not in target else pick(target[name], value)
        return {name: [r.get(name) for r in merged] for name in columns}
