"""QAOA for MaxCut on a small graph, on the local simulator, as a Prefect flow.

    python flows/qaoa_maxcut.py       # prints {"best_cut": ..., "optimum": ..., "approximation_ratio": ...}

The cost is minus the expected cut, sum over edges of (Z_i Z_j - 1) / 2, measured in one circuit
per iteration batch; SPSA tunes the p=1 angles. The best cut is read from samples at the final
angles and compared with the optimum found by brute force.
"""

import itertools
import json
import os
import sys

os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")

from prefect import flow, task  # noqa: E402
from prefect.runtime import flow_run  # noqa: E402

from prefect_braket import BraketDevice  # noqa: E402
from prefect_braket.variational import SPSA, Observable, ParametricCost, run_variational  # noqa: E402

EDGES = [(0, 1), (1, 2), (2, 3), (3, 0), (0, 2), (3, 4), (4, 1)]
NODES = 5


def cut_value(bits: str, edges=EDGES) -> int:
    return sum(bits[i] != bits[j] for i, j in edges)


def brute_force_optimum(nodes: int = NODES, edges=EDGES) -> tuple[int, str]:
    return max((cut_value("".join(b), edges), "".join(b)) for b in itertools.product("01", repeat=nodes))


def maxcut_observable(nodes: int = NODES, edges=EDGES) -> Observable:
    terms = {}
    for i, j in edges:
        paulis = ["I"] * nodes
        paulis[i] = paulis[j] = "Z"
        terms["".join(paulis)] = terms.get("".join(paulis), 0.0) + 0.5
    return Observable.from_dict(terms, offset=-0.5 * len(edges))


def qaoa_ansatz(layers: int, nodes: int = NODES, edges=EDGES) -> tuple[str, list[str]]:
    names = [f"gamma_{k}" for k in range(layers)] + [f"beta_{k}" for k in range(layers)]
    lines = ["OPENQASM 3.0;", *(f"input float {n};" for n in names), f"qubit[{nodes}] q;"]
    lines += [f"h q[{i}];" for i in range(nodes)]
    for k in range(layers):
        for i, j in edges:
            lines += [f"cnot q[{i}], q[{j}];", f"rz(gamma_{k}) q[{j}];", f"cnot q[{i}], q[{j}];"]
        lines += [f"rx(beta_{k}) q[{i}];" for i in range(nodes)]
    return "\n".join(lines) + "\n", names


@task(name="sample-cuts")
def sample_cuts(device: BraketDevice, ansatz: str, names: list[str], parameters: list[float], shots: int) -> dict:
    counts = device.run(ansatz, shots=shots, inputs=dict(zip(names, parameters, strict=True))).measurement_counts
    best = max(counts, key=cut_value)
    return {"best_bits": best, "best_cut": cut_value(best)}


@flow(name="qaoa-maxcut")
def qaoa_maxcut(experiment_id: str | None = None, layers: int = 1, max_iterations: int = 40, shots: int = 0,
                sample_shots: int = 200, seed: int = 11) -> dict:
    """Tunes QAOA angles for MaxCut, then samples cuts at the tuned angles."""
    experiment_id = experiment_id or f"qaoa-maxcut-{str(flow_run.id)[:8]}"
    device = BraketDevice()
    observable = maxcut_observable()
    ansatz, names = qaoa_ansatz(layers)
    initial = [0.4] * layers + [0.3] * layers
    summary = run_variational(ParametricCost(ansatz, observable, names), initial, experiment_id=experiment_id,
                              device=device, optimizer=SPSA(a=1.0, c=0.2, seed=seed), max_iterations=max_iterations,
                              tolerance=0.0, shots=shots, reference_energy=-brute_force_optimum()[0])
    optimum, optimal_bits = brute_force_optimum()
    sampled = sample_cuts(device, ansatz, names, summary["parameters"], sample_shots)
    expected_cut = -summary["energy"]
    return {
        "best_cut": sampled["best_cut"],
        "best_bits": sampled["best_bits"],
        "optimum": optimum,
        "optimal_bits": optimal_bits,
        "expected_cut": expected_cut,
        "approximation_ratio": expected_cut / optimum,
        "iterations": summary["iterations"],
    }


if __name__ == "__main__":
    print(json.dumps(qaoa_maxcut(experiment_id=sys.argv[1] if len(sys.argv) > 1 else None)))
