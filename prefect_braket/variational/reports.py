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
    energies: Sequence[float], reference: float | None = None, width: int = 480, height: int = 200
) -> str:
    """A line plot of energy by iteration (and a dashed reference line), as SVG."""
    values = list(energies) + ([reference] if reference is not None else [])
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    pad = 30

    def xy(i: int, v: float) -> str:
        x = pad + (width - 2 * pad) * (i / max(len(energies) - 1, 1))
        y = height - pad - (height - 2 * pad) * ((v - low) / span)
        return f"{x:.1f},{y:.1f}"

    line = " ".join(xy(i, v) for i, v in enumerate(energies))
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">',
             f'<rect width="{width}" height="{height}" fill="white"/>',
             f'<polyline fill="none" stroke="#1f6feb" stroke-width="2" points="{line}"/>']
    if reference is not None:
        y = xy(0, reference).split(",")[1]
        parts.append(f'<line x1="{pad}" x2="{width - pad}" y1="{y}" y2="{y}" stroke="#d1242f" stroke-dasharray="4"/>')
    parts += [f'<text x="{pad}" y="15" font-size="12">{high:.6f}</text>',
              f'<text x="{pad}" y="{height - 8}" font-size="12">{low:.6f} (iteration {len(energies) - 1})</text>',
              "</svg>"]
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
        "| | |", "|---|---|",
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
