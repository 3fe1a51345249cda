"""Metric lines into Braket's columns: rows keyed by the pivot column and the node that logged them."""

import pytest

from prefect_braket.core.metrics import MetricsParser

# Two nodes of a multi-instance job log the same iteration at the same timestamp.
LINES = [
    "[node-1] Metrics - timestamp=5; loss=0.5; iteration_number=0;",
    "[node-2] Metrics - timestamp=5; loss=0.7; iteration_number=0;",
    "[node-1] Metrics - timestamp=6; loss=0.4; iteration_number=1;",
]


def rows(table):
    return sorted(zip(table["node_id"], table["iteration_number"], table["loss"], strict=True))


def test_two_nodes_at_the_same_point_keep_a_row_each():
    parser = MetricsParser()
    for line in LINES:
        parser.feed(line)
    expected = [("node-1", 0.0, 0.5), ("node-1", 1.0, 0.4), ("node-2", 0.0, 0.7)]
    assert rows(parser.table("timestamp")) == expected
    assert rows(parser.table("iteration_number")) == expected


def test_max_and_min_settle_conflicts_within_one_nodes_row():
    parser = MetricsParser()
    for line in [*LINES, "[node-2] Metrics - timestamp=5; loss=0.9; iteration_number=0;"]:
        parser.feed(line)
    assert rows(parser.table("timestamp", "max")) == [("node-1", 0.0, 0.5), ("node-1", 1.0, 0.4), ("node-2", 0.0, 0.9)]
    assert rows(parser.table("timestamp", "min")) == [("node-1", 0.0, 0.5), ("node-1", 1.0, 0.4), ("node-2", 0.0, 0.7)]


def test_pairs_that_are_not_numbers_are_dropped_and_the_rest_kept():
    parser = MetricsParser()
    row = parser.feed("Metrics - label=abc; loss=0.25; note=n/a; iteration_number=3;")
    assert row == {"loss": 0.25, "iteration_number": 3.0}
    assert parser.feed("Metrics - label=abc;") is None  # no number at all: not a metric row
    assert parser.feed("loss=0.5; iteration_number=1;") is None  # no marker: not a metric line
    assert len(parser.rows) == 1


def test_a_line_without_a_timestamp_takes_the_logs_and_keeps_its_own():
    parser = MetricsParser()
    assert parser.feed("Metrics - loss=0.5;", 17.5) == {"loss": 0.5, "timestamp": 17.5}
    assert parser.feed("Metrics - loss=0.4; timestamp=3;", 18.0) == {"loss": 0.4, "timestamp": 3.0}
    assert parser.feed("Metrics - loss=0.3;") == {"loss": 0.3}
    # By default the table pivots on the timestamp: the row without one is left out.
    assert parser.table() == {"loss": [0.5, 0.4], "timestamp": [17.5, 3.0]}


def test_rows_without_the_pivot_column_are_skipped_not_the_end_of_the_table():
    parser = MetricsParser()
    for line in ["Metrics - timestamp=1; loss=0.9;", "Metrics - timestamp=2; loss=0.8; iteration_number=0;",
                 "Metrics - timestamp=3; loss=0.7; iteration_number=1;"]:
        parser.feed(line)
    assert parser.table("iteration_number") == {"timestamp": [2.0, 3.0], "loss": [0.8, 0.7],
                                                "iteration_number": [0.0, 1.0]}
    # A column some rows lack is padded with None.
    assert parser.table("timestamp")["iteration_number"] == [None, 0.0, 1.0]


def test_bad_pivot_or_statistic_is_refused_by_name():
    parser = MetricsParser()
    with pytest.raises(ValueError, match="metric_type 'node' must be 'timestamp' or 'iteration_number'"):
        parser.table("node")
    with pytest.raises(ValueError, match="statistic 'mean' must be 'max' or 'min'"):
        parser.table("timestamp", "mean")
