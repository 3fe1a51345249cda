"""QAOA for MaxCut: graphs read from edge lists and networkx, the cost against an independent
statevector, the angles' start and growth, and the strategy's quality on graphs it has not seen."""

import networkx as nx
import numpy as np
import pytest

from helpers.qaoa import bfgs, statevector_energy, thorough_best
from prefect_braket.orchestration.blocks import BraketDevice
from prefect_braket.variational.qaoa import MaxCut, best_sampled_cut, grow_layers, interpolate, linear_ramp


def scipy_stage(graph: MaxCut):
    """A stage minimiser on the independent statevector, recording the stages it was asked for."""
    asked = []

    def stage(cost, start, name):
        asked.append((name, len(cost.parameters), list(start)))
        return bfgs(graph, start)

    return stage, asked


def test_edge_lists_and_networkx_graphs_read_alike():
    graph = MaxCut.from_edges([[1, 0], (1, 2, 2.5), [2, 3]])
    assert graph == MaxCut(4, ((0, 1, 1.0), (1, 2, 2.5), (2, 3, 1.0)))
    labelled = nx.Graph()
    labelled.add_edge("a", "b")
    labelled.add_edge("b", "c", weight=2.5)
    labelled.add_edge("c", "d")
    assert MaxCut.of(labelled) == graph and MaxCut.of(graph) is graph and MaxCut.of([[0, 1]]).nodes == 2
    assert MaxCut.from_edges([[0, 1]], nodes=3).nodes == 3  # an isolated node is still a qubit


@pytest.mark.parametrize(("edges", "nodes", "message"), [
    ([], None, "at least one edge"),
    ([[0, 0]], None, r"\[0, 0\]: an edge joins two different nodes"),
    ([[0, -1]], None, "numbered from 0"),
    ([[0, 1, 2, 3]], None, r"\[i, j\] or \[i, j, weight\]"),
    ([[0, 4]], 3, "nodes=3, but the edges name node 4"),
])
def test_bad_graphs_are_refused_naming_the_edge(edges, nodes, message):
    with pytest.raises(ValueError, match=message):
        MaxCut.from_edges(edges, nodes=nodes)


def test_the_observable_is_minus_the_cut_of_every_assignment():
    graph = MaxCut.from_edges([[0, 1, 1.5], [1, 2, 0.5], [2, 3, 2.0], [0, 3], [1, 3]])
    assert np.allclose(np.diag(graph.observable().matrix()).real, -graph.cut_values())
    assert graph.best_cut() == (5.0, "0101") and graph.cut("0101") == 5.0
    assert best_sampled_cut(graph, {"0000": 50, "0110": 3, "0101": 1}) == (5.0, "0101")


def test_the_circuit_prepares_the_qaoa_state():
    graph = MaxCut.from_edges([[0, 1, 1.5], [1, 2, 0.5], [2, 3, 2.0], [0, 3], [1, 3]])
    rng = np.random.default_rng(5)
    for layers in (1, 3):
        points = [rng.uniform(-1.5, 1.5, 2 * layers).tolist() for _ in range(2)]
        energies = graph.cost(layers).evaluate(BraketDevice(), points, shots=0)
        assert energies == pytest.approx([statevector_energy(graph, p) for p in points], abs=1e-9)


def test_the_ramp_rises_and_falls_and_interpolation_keeps_the_schedules_shape():
    assert linear_ramp(2, 1.0) == [0.25, 0.75, 0.75, 0.25]
    assert interpolate([0.4, 0.3]) == [0.4, 0.4, 0.3, 0.3]  # one layer becomes two of the same
    assert interpolate([1.0, 2.0, 3.0, 4.0]) == pytest.approx([1.0, 1.5, 2.0, 3.0, 3.5, 4.0])
    ramp = linear_ramp(4)
    assert interpolate(linear_ramp(3)) == pytest.approx(ramp, abs=0.2)  # a stretched ramp is near a ramp
    with pytest.raises(ValueError, match="layers=0"):
        MaxCut.from_edges([[0, 1]]).ansatz(0)


def test_layers_grow_from_the_ramp_and_restarts_keep_the_best():
    graph = MaxCut.of(nx.random_regular_graph(3, 6, seed=3))
    stage, asked = scipy_stage(graph)
    found = grow_layers(graph, 3, stage, restarts=2, seed=1)
    assert [name for name, _, _ in asked] == ["p1", "p2", "p3", "p3-restart-1", "p3-restart-2"]
    assert [count for _, count, _ in asked] == [2, 4, 6, 6, 6]
    assert asked[0][2] == linear_ramp(1, graph.ramp_scale())
    assert found["energy"] == min(stage["energy"] for stage in found["stages"] if stage["layers"] == 3)
    assert len(found["parameters"]) == 6


def test_at_p2_the_strategy_reaches_what_a_thorough_search_finds():
    """One graph here; bench/qaoa_quality.py measures a dozen, 3-regular and random, 6-10 nodes."""
    problem = MaxCut.of(nx.random_regular_graph(3, 6, seed=1))
    stage, _ = scipy_stage(problem)
    found = grow_layers(problem, 2, stage)
    assert -found["energy"] >= 0.98 * -thorough_best(problem, 2, starts=12)[0]
