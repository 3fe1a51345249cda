"""QAOA for MaxCut: how good the angles the library finds are, on graphs it has not seen.

    python bench/qaoa_quality.py [graphs_per_kind] [thorough_starts]

Graphs come from a seed: 3-regular and random (G(n, 1/2)), 6, 8 and 10 nodes. For each, at p=2,
on the local simulator with exact values:
- `strategy`: the library's (`qaoa.grow_layers`: linear-ramp start, p=1 then p=2 from the
  interpolated angles), each stage SciPy's BFGS, as `run_qaoa_maxcut` does by default;
- `fixed start`: one BFGS run of the same p=2 circuit from a fixed start, what a user without
  the strategy gets;
- `thorough`: the best of `thorough_starts` BFGS runs from random angles (the reference);
- `sampled`: the best cut among 1,000 shots of the strategy's final circuit, against the
  optimum found by trying every assignment.
Verdict: every graph's strategy/thorough >= 0.98 and every sampled best cut the optimum.
"""

import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import networkx as nx  # noqa: E402
import numpy as np  # noqa: E402
from scipy.optimize import minimize  # noqa: E402

from prefect_braket.orchestration.blocks import BraketDevice  # noqa: E402
from prefect_braket.variational.qaoa import MaxCut, best_sampled_cut, grow_layers  # noqa: E402

LAYERS = 2
FIXED_START = [0.4, 0.4, 0.3, 0.3]  # the old example flow's start, at p=2
DEVICE = BraketDevice()


def bfgs(cost, start):
    """BFGS on the library's exact cost; the energy, the angles and the evaluations it took."""
    evaluations = 0

    def energy(x):
        nonlocal evaluations
        evaluations += 1
        return cost.evaluate(DEVICE, [x.tolist()], shots=0)[0]

    found = minimize(energy, np.asarray(start, dtype=float), method="BFGS")
    return float(found.fun), found.x.tolist(), evaluations


def graphs(per_kind: int):
    for seed in range(per_kind):
        for nodes in (6, 8, 10):
            yield f"3-regular-{nodes}-s{seed}", nx.random_regular_graph(3, nodes, seed=seed)
            random = nx.gnp_random_graph(nodes, 0.5, seed=seed)
            if random.number_of_edges():
                yield f"random-{nodes}-s{seed}", random


def measure(name: str, graph: MaxCut, starts: int, rng: np.random.Generator) -> dict:
    evaluations = 0

    def stage(cost, start, _):
        nonlocal evaluations
        energy, angles, used = bfgs(cost, start)
        evaluations += used
        return energy, angles

    started = time.perf_counter()
    grown = grow_layers(graph, LAYERS, stage)
    strategy_seconds = time.perf_counter() - started
    fixed = bfgs(graph.cost(LAYERS), FIXED_START)[0]
    thorough = min(bfgs(graph.cost(LAYERS), np.concatenate([rng.uniform(0, np.pi, LAYERS),
                                                             rng.uniform(0, np.pi / 2, LAYERS)]))[0]
                   for _ in range(starts))
    source, names = graph.ansatz(LAYERS)
    inputs = dict(zip(names, grown["parameters"], strict=True))
    counts = DEVICE.run(source, shots=1000, inputs=inputs).measurement_counts
    optimum = graph.best_cut()[0]
    return {"graph": name, "optimum": optimum, "strategy": round(-grown["energy"], 4),
            "fixed_start": round(-fixed, 4), "thorough": round(-thorough, 4),
            "strategy_ratio": round(grown["energy"] / thorough, 4), "fixed_start_ratio": round(fixed / thorough, 4),
            "sampled_best": best_sampled_cut(graph, counts)[0], "evaluations": evaluations,
            "strategy_seconds": round(strategy_seconds, 2)}


def main() -> None:
    per_kind = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    starts = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    rng = np.random.default_rng(2026)
    rows = []
    for name, graph in graphs(per_kind):
        rows.append(measure(name, MaxCut.of(graph), starts, rng))
        print(json.dumps(rows[-1]), flush=True)
    ratios = [row["strategy_ratio"] for row in rows]
    fixed = [row["fixed_start_ratio"] for row in rows]
    all_optimal = all(row["sampled_best"] == row["optimum"] for row in rows)
    print(json.dumps({
        "graphs": len(rows), "thorough_starts": starts,
        "strategy_ratio": {"min": min(ratios), "median": statistics.median(ratios)},
        "fixed_start_ratio": {"min": min(fixed), "median": statistics.median(fixed)},
        "sampled_best_is_optimum": all_optimal,
        "target": "strategy_ratio min >= 0.98 and every sampled best cut the optimum",
        "target_met": min(ratios) >= 0.98 and all_optimal,
    }))


if __name__ == "__main__":
    main()
