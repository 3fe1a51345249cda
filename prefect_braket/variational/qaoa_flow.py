"""`run_qaoa_maxcut`: QAOA for MaxCut inside a flow, grown layer by layer, its best cut sampled.

Each stage of `qaoa.grow_layers` (p = 1, 2, ..., then the restarts) is one `run_variational`
with an experiment id of its own (`{experiment_id}-p1`, `-p2`, `-p2-restart-1`): each is
checkpointed and cached on its own, so a re-run flow evaluates no finished stage again and
resumes an interrupted one, and each has its table and convergence plot. The cuts are then
sampled at the best angles.

Example:
    ```python
    from prefect import flow
    from prefect_braket.variational import run_qaoa_maxcut

    @flow
    def maxcut(edges: list[list[float]]):
        return run_qaoa_maxcut(edges, layers=2, experiment_id="ring-6")
    ```
"""

from __future__ import annotations

from typing import Any

from prefect_braket.orchestration.blocks import BraketDevice
from prefect_braket.variational.flow import run_variational
from prefect_braket.variational.optimizers import as_optimizer
from prefect_braket.variational.qaoa import MaxCut, best_sampled_cut, grow_layers


def run_qaoa_maxcut(
    graph: Any,
    layers: int = 2,
    experiment_id: str = "qaoa-maxcut",
    device: Any = None,
    optimizer: Any = None,
    shots: int = 0,
    sample_shots: int = 1000,
    restarts: int = 0,
    max_iterations: int = 200,
    checkpoint_location: str | None = None,
) -> dict[str, Any]:
    """Maximises the expected cut of `graph` with a `layers`-deep QAOA inside the current flow.

    Args:
        graph: A `MaxCut`, an edge list (`[i, j]` or `[i, j, weight]`), or a networkx graph.
        layers: QAOA's depth p.
        experiment_id: The stages' experiment ids start with it ([a-z0-9-]).
        device: A `BraketDevice`; the local state-vector simulator by default.
        optimizer: As `run_variational`'s. Default: SciPy's BFGS for exact values (`shots=0`),
            COBYLA with shots, whose noise a finite-difference gradient would follow.
        shots: Shots per cost evaluation; 0 for exact values on simulators.
        sample_shots: Shots of the final circuit, from which the best cut is read.
        restarts: Extra runs at the final depth from the best angles, perturbed.
        max_iterations: Cost evaluations per stage, at most.
        checkpoint_location: A directory or `s3://` prefix for the stages' checkpoints.

    Returns:
        `expected_cut` (at the best angles), `parameters` ([γ_1..γ_p, β_1..β_p]), `best_cut` and
        `best_bits` (the largest sampled cut), `stages` (each stage's expected cut), `layers`.
    """
    problem = MaxCut.of(graph)
    device = device or BraketDevice()
    chosen = as_optimizer(optimizer or ("scipy:BFGS" if shots == 0 else "scipy:COBYLA"))

    def minimize(cost: Any, start: list[float], stage: str) -> tuple[float, list[float]]:
        summary = run_variational(cost, start, experiment_id=f"{experiment_id}-{stage}", device=device,
                                  optimizer=chosen, max_iterations=max_iterations, shots=shots,
                                  checkpoint_location=checkpoint_location,
                                  reference_energy=-problem.best_cut()[0] if problem.nodes <= 16 else None)
        return summary["energy"], summary["parameters"]

    grown = grow_layers(problem, layers, minimize, restarts=restarts)
    source, names = problem.ansatz(layers)
    sampled = device.run(source, shots=sample_shots, inputs=dict(zip(names, grown["parameters"], strict=True)))
    best_cut, best_bits = best_sampled_cut(problem, sampled.measurement_counts)
    return {
        "expected_cut": -grown["energy"],
        "parameters": grown["parameters"],
        "best_cut": best_cut,
        "best_bits": best_bits,
        "stages": [{"stage": stage["stage"], "layers": stage["layers"], "expected_cut": -stage["energy"]}
                   for stage in grown["stages"]],
        "layers": layers,
    }
