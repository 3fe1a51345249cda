"""Figures that report-making tests (the reliability suite) print at the end of every run."""

REPORTS: list[tuple[str, dict]] = []
