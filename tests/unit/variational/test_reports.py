"""The summary's convergence plot and table: what each label says is what it names."""

import re

import numpy as np

from prefect_braket.variational.loop import Iteration, LoopState
from prefect_braket.variational.optimizers import SPSA
from prefect_braket.variational.reports import convergence_svg, summary_markdown


def texts(svg: str) -> list[str]:
    return re.findall(r"<text[^>]*>([^<]*)</text>", svg)


def test_the_plot_labels_its_axes_its_range_and_its_reference():
    energies = [-4.0, -4.5, -4.59986]
    labels = texts(convergence_svg(energies, reference=-6.0))
    # The y axis spans the energies and the reference; no label pins the minimum on an iteration.
    assert "-4.000000" in labels and "-6.000000" in labels and not any("iteration " in t for t in labels)
    assert {"energy", "iteration", "0", "2"} <= set(labels)  # axis titles, first and last iteration
    assert "reference -6.000000" in labels  # the dashed line is named in the legend
    assert texts(convergence_svg(energies)).count("energy") == 2  # the y title and the one legend entry
    assert not any(t.startswith("reference") for t in texts(convergence_svg(energies)))


def test_the_summary_table_has_a_header():
    state = LoopState(np.array([0.1]), [Iteration(0, -1.0, 0.5, [0.0], 0.01), Iteration(1, -1.1, 0.2, [0.1], 0.01)])

    class Device:
        device_arn = "local:braket/braket_sv"

    lines = summary_markdown(state, SPSA(), "h2", 2, -1.137, Device(), 0).splitlines()
    header = lines.index("|---|---|") - 1
    assert lines[header] == "| quantity | value |"
    assert "| final energy | -1.10000000 |" in lines and "| reference energy | -1.13700000 |" in lines


def test_a_table_row_shows_floats_to_ten_digits_and_the_checkpoint_keeps_them_whole():
    step = Iteration(4, 0.1 + 0.2, 1 / 3, [0.30000000000000004, 1.0], 0.123456)
    row = step.row()
    assert row["iteration"] == 4 and row["energy"] == 0.3 and row["gradient_norm"] == 0.3333333333
    assert row["parameters"] == "[0.3, 1.0]" and row["seconds"] == 0.123
    assert LoopState(np.array([0.0]), [step]).to_checkpoint()["history"][0]["energy"] == 0.1 + 0.2
