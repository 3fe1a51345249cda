"""QAOA for MaxCut on any graph, as a Prefect flow: grown layer by layer, then its cuts sampled.

    python flows/qaoa_maxcut.py                                  # the 5-node example graph, p=2
    python flows/qaoa_maxcut.py '[[0, 1], [1, 2], [2, 0, 2.5]]' 3  # your edges ([i, j] or [i, j, weight]), p

It prints {"best_cut": ..., "optimum": ..., "approximation_ratio": ...}: the expected cut at the
optimised angles against the best cut (found by trying every assignment), and the best cut among
the final circuit's samples. `device_arn` takes any gate-model device: a local simulator by
default, an AWS ARN with credentials for Amazon Braket.
"""

import json
import os
import sys

os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")

from prefect import flow  # noqa: E402
from prefect.runtime import flow_run  # noqa: E402

from prefect_braket import BraketDevice  # noqa: E402
from prefect_braket.variational import MaxCut, run_qaoa_maxcut  # noqa: E402

EXAMPLE_EDGES = [[0, 1], [1, 2], [2, 3], [3, 0], [0, 2], [3, 4], [4, 1]]


@flow(name="qaoa-maxcut")
def qaoa_maxcut(edges: list[list[float]] = EXAMPLE_EDGES, layers: int = 2,
                device_arn: str = "local:braket/braket_sv", shots: int = 0, sample_shots: int = 1000,
                restarts: int = 0, experiment_id: str | None = None) -> dict:
    """Maximises the expected cut of the graph given by `edges` ([i, j] or [i, j, weight]) with a
    `layers`-deep QAOA, then samples cuts at the optimised angles.

    Args:
        edges: The graph, as a JSON edge list of node numbers from 0.
        layers: QAOA's depth p.
        device_arn: Where the circuits run.
        shots: Shots per cost evaluation (0: exact, on simulators).
        sample_shots: Shots of the final circuit.
        restarts: Extra optimisations at the final depth from perturbed angles.
        experiment_id: Names the checkpoints and artifacts; a new one per flow run by default.
    """
    experiment_id = experiment_id or f"qaoa-maxcut-{str(flow_run.id)[:8]}"
    graph = MaxCut.from_edges(edges)
    found = run_qaoa_maxcut(graph, layers, experiment_id, BraketDevice(device_arn=device_arn), shots=shots,
                            sample_shots=sample_shots, restarts=restarts)
    optimum, optimal_bits = graph.best_cut()
    return {**found, "optimum": optimum, "optimal_bits": optimal_bits,
            "approximation_ratio": found["expected_cut"] / optimum}


if __name__ == "__main__":
    arguments = {}
    if len(sys.argv) > 1:
        arguments["edges"] = json.loads(sys.argv[1])
    if len(sys.argv) > 2:
        arguments["layers"] = int(sys.argv[2])
    print(json.dumps(qaoa_maxcut(**arguments)))
