"""What a finished run shows, as text: a convergence plot (SVG), a sparkline, the summary markdown.

Pure rendering, no Prefect: `publishing.Reporter` sends the result out as an artifact. The plot
is an inline SVG image inside the markdown, since artifacts hold text only.
"""

from __future__ import annotations

import base64
import json
from typing import Any, Sequence

from prefect_braket.variational.loop import LoopState, final_energy
from prefect_braket.variational.optimizers import Optimizer


def sparkline(values: Sequence[float]) -> str:
    bars = "▁▂▃▄▅▆▇█"
    low, high = min(values), max(values)
    return "".join(bars[int((v - low) / ((high - low) or 1) * (len(bars) - 1))] for v in values)


def convergence_svg(
    energies: Sequence[float], reference: float | None = None, width: int = 520, height: int = 240
) -> str:
    """A line plot of energy by iteration, with a dashed reference line if given, as SVG: labelled
    axes (the energy range at the ends of the y axis, the first and last iteration on the x
    axis) and a legend naming both lines."""
    values = list(energies) + ([reference] if reference is not None else [])
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    left, right, top, bottom = 80, 20, 30, 40  # room for the axis labels and the legend

    def xy(i: int, v: float) -> tuple[float, float]:
        x = left + (width - left - right) * (i / max(len(energies) - 1, 1))
        y = height - bottom - (height - top - bottom) * ((v - low) / span)
        return x, y

    line = " ".join("{:.1f},{:.1f}".format(*xy(i, v)) for i, v in enumerate(energies))
    last = len(energies) - 1
    x_axis, y_axis = height - bottom, left
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif">',
             f'<rect width="{width}" height="{height}" fill="white"/>',
             f'<line x1="{y_axis}" x2="{width - right}" y1="{x_axis}" y2="{x_axis}" stroke="#57606a"/>',
             f'<line x1="{y_axis}" x2="{y_axis}" y1="{top}" y2="{x_axis}" stroke="#57606a"/>',
             f'<polyline fill="none" stroke="#1f6feb" stroke-width="2" points="{line}"/>']
    legend = [("#1f6feb", "", "energy")]
    if reference is not None:
        y = xy(0, reference)[1]
        parts.append(f'<line x1="{y_axis}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#d1242f" '
                     'stroke-dasharray="4"/>')
        legend.append(("#d1242f", ' stroke-dasharray="4"', f"reference {reference:.6f}"))
    parts += [f'<text x="{y_axis - 4}" y="{top + 4}" font-size="11" text-anchor="end">{high:.6f}</text>',
              f'<text x="{y_axis - 4}" y="{x_axis}" font-size="11" text-anchor="end">{low:.6f}</text>',
              f'<text x="14" y="{(top + x_axis) / 2}" font-size="12" transform="rotate(-90 14 {(top + x_axis) / 2})" '
              'text-anchor="middle">energy</text>',
              f'<text x="{y_axis}" y="{x_axis + 14}" font-size="11" text-anchor="middle">0</text>',
              f'<text x="{width - right}" y="{x_axis + 14}" font-size="11" text-anchor="middle">{last}</text>',
              f'<text x="{(y_axis + width - right) / 2}" y="{height - 6}" font-size="12" '
              'text-anchor="middle">iteration</text>']
    for row, (colour, dash, label) in enumerate(legend):
        y = 12 + 14 * row
        parts += [f'<line x1="{width - 190}" x2="{width - 165}" y1="{y}" y2="{y}" stroke="{colour}" stroke-width="2"'
                  f'{dash}/>', f'<text x="{width - 160}" y="{y + 4}" font-size="11">{label}</text>']
    parts.append("</svg>")
    return "".join(parts)


def summary_markdown(state: LoopState, optimizer: Optimizer, experiment_id: str, evaluated: int,
                     reference_energy: float | None, device: Any, shots: int) -> str:
    """A run's summary: the convergence plot (an inline SVG image) and the final figures."""
    energies = [h.energy for h in state.history]
    image = base64.b64encode(convergence_svg(energies, reference_energy).encode()).decode()
    energy = final_energy(state, optimizer)
    lines = [
        f"# Variational run `{experiment_id}`", "",
        f"![convergence](data:image/svg+xml;base64,{image})", "",
        f"Energy by iteration: `{sparkline(energies)}`", "",
        "| quantity | value |", "|---|---|",
        f"| final energy | {energy:.8f} |",
        *([f"| reference energy | {reference_energy:.8f} |",
           f"| error | {energy - reference_energy:.2e} |"] if reference_energy is not None else []),
        f"| iterations | {len(energies)} ({evaluated} evaluated in this run) |",
        f"| converged | {state.converged} |",
        f"| device | `{device.device_arn}` |",
        f"| shots | {shots} |",
        f"| parameters | `{json.dumps([round(float(p), 6) for p in state.parameters])}` |",
    ]
    return "\n".join(lines)
