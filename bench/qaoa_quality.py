"""QAOA for MaxCut: how good the angles the library finds are, on graphs it has not seen.

    python bench/qaoa_quality.py [graphs_per_kind] [thorough_starts]      # defaults: 2, 30

Graphs come from a seed: 3-regular and random (G(n, 1/2)), 6, 8 and 10 nodes. For each, at p=2,
with exact values:
- `strategy`: the library's (`qaoa.grow_layers`: linear-ramp start, p=1 then p=2 from the
  interpolated angles), each stage SciPy's BFGS on the library's cost on the local simulator,
  as `run_qaoa_maxcut` does by default;
- `fixed start`: one BFGS run of the same p=2 circuit from a fixed start, what a user without
  the strategy gets;
- `thorough`: the best of `thorough_starts` BFGS runs from random angles (the reference);
- `sampled`: the best cut among 1,000 shots of the strategy's final circuit on the simulator,
  against the optimum found by trying every assignment.
The references (fixed start, thorough) run on an independent statevector built in numpy
(tests/helpers/qaoa.py), a thousand times faster than the simulator's OpenQASM parser on these
circuits; `reference_agreement` is the largest difference between it and the library's energy,
at the strategy's angles and at the thorough search's best, so the two are one circuit.
Verdict: every graph's strategy/thorough >= 0.98, every sampled best cut the optimum, and the
energies agree to 1e-6.
"""

import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import networkx as nx  # noqa: E402
import numpy as np  # noqa: E402
from scipy.optimize import minimize  # noqa: E402

from helpers.qaoa import bfgs, statevector_energy, thorough_best  # noqa: E402
from prefect_braket.orchestration.blocks import BraketDevice  # noqa: E402
from prefect_braket.variational.qaoa import MaxCut, best_sampled_cut, grow_layers  # noqa: E402

LAYERS = 2
FIXED_START = [0.4, 0.4, 0.3, 0.3]  # the old example flow's start, at p=2
AGREEMENT = 1e-6
DEVICE = BraketDevice()


def library_energy(cost, angles) -> float:
    return cost.evaluate(DEVICE, [list(angles)], shots=0)[0]


def graphs(per_kind: int):
    for seed in range(per_kind):
        for nodes in (6, 8, 10):
            yield f"3-regular-{nodes}-s{seed}", nx.random_regular_graph(3, nodes, seed=seed)
            random = nx.gnp_random_graph(nodes, 0.5, seed=seed)
            if random.number_of_edges():
                yield f"random-{nodes}-s{seed}", random


def measure(name: str, graph: MaxCut, starts: int, seed: int) -> dict:
    evaluations = 0

    def stage(cost, start, _):
        """BFGS on the library's cost, as `run_qaoa_maxcut` runs each stage."""
        nonlocal evaluations

        def energy(x):
            nonlocal evaluations
            evaluations += 1
            return library_energy(cost, x.tolist())

        found = minimize(energy, np.asarray(start, dtype=float), method="BFGS")
        return float(found.fun), found.x.tolist()

    started = time.perf_counter()
    grown = grow_layers(graph, LAYERS, stage)
    strategy_seconds = time.perf_counter() - started
    fixed = bfgs(graph, FIXED_START)[0]
    thorough, best_angles = thorough_best(graph, LAYERS, starts, seed)
    cost = graph.cost(LAYERS)
    agreement = max(abs(library_energy(cost, angles) - statevector_energy(graph, angles))
                    for angles in (grown["parameters"], best_angles))
    source, names = graph.ansatz(LAYERS)
    inputs = dict(zip(names, grown["parameters"], strict=True))
    counts = DEVICE.run(source, shots=1000, inputs=inputs).measurement_counts
    optimum = graph.best_cut()[0]
    return {"graph": name, "optimum": optimum, "strategy": round(-grown["energy"], 4),
            "fixed_start": round(-fixed, 4), "thorough": round(-thorough, 4),
            "strategy_ratio": round(grown["energy"] / thorough, 4), "fixed_start_ratio": round(fixed / thorough, 4),
            "sampled_best": best_sampled_cut(graph, counts)[0], "reference_agreement": float(f"{agreement:.2g}"),
            "evaluations": evaluations, "strategy_seconds": round(strategy_seconds, 2)}


def main() -> None:
    per_kind = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    starts = int(sys.argv[2]) if len(sys.argv) > 2 else 30
    rows = []
    for number, (name, graph) in enumerate(graphs(per_kind)):
        rows.append(measure(name, MaxCut.of(graph), starts, seed=2026 + number))
        print(json.dumps(rows[-1]), flush=True)
    ratios = [row["strategy_ratio"] for row in rows]
    fixed = [row["fixed_start_ratio"] for row in rows]
    all_optimal = all(row["sampled_best"] == row["optimum"] for row in rows)
    agreement = max(row["reference_agreement"] for row in rows)
    print(json.dumps({
        "graphs": len(rows), "thorough_starts": starts,
        "strategy_ratio": {"min": min(ratios), "median": statistics.median(ratios)},
        "fixed_start_ratio": {"min": min(fixed), "median": statistics.median(fixed)},
        "sampled_best_is_optimum": all_optimal, "reference_agreement": agreement,
        "target": f"strategy_ratio min >= 0.98, every sampled best cut the optimum, agreement <= {AGREEMENT:g}",
        "target_met": min(ratios) >= 0.98 and all_optimal and agreement <= AGREEMENT,
    }))


if __name__ == "__main__":
    main()
