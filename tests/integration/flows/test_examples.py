"""The README's example flows (flows/), each run small: they finish, and their results say what the
README says they show. Each run has experiment ids and checkpoint locations of its own."""

import asyncio
import sys

import pytest

from helpers.paths import FLOWS

sys.path.insert(0, str(FLOWS))

from hybrid_job_flow import hybrid_job_flow  # noqa: E402
from qaoa_maxcut import qaoa_maxcut  # noqa: E402
from resume_demo import resume_demo  # noqa: E402
from sweep import sweep  # noqa: E402

from helpers.runs import latest_artifacts  # noqa: E402
from prefect_braket import HybridJob  # noqa: E402


def test_hybrid_job_flow_runs_the_decorated_job_to_its_result():
    result = hybrid_job_flow(num_tasks=3, lr=0.5)
    assert result["final_theta"] == pytest.approx(1.5)
    job = HybridJob.attach(result["job_arn"])
    assert job.state() == "COMPLETED"
    assert job.metrics("iteration_number")["theta"] == pytest.approx([0.5, 1.0, 1.5])


def test_qaoa_maxcut_on_a_graph_of_its_own_grows_its_layers_and_finds_the_best_cut(tmp_path, monkeypatch):
    monkeypatch.setenv("PREFECT_BRAKET_HOME", str(tmp_path / "home"))  # its checkpoints, this test's own
    from prefect_braket.variational import MaxCut

    edges = [[0, 1, 2.0], [1, 2], [2, 3], [3, 0], [0, 2, 0.5]]  # weighted, not the example's graph
    result = qaoa_maxcut(edges=edges, layers=2, sample_shots=300)
    graph = MaxCut.from_edges(edges)
    assert (result["optimum"], result["optimal_bits"]) == graph.best_cut()
    assert graph.cut(result["best_bits"]) == result["best_cut"] == result["optimum"]
    assert [stage["layers"] for stage in result["stages"]] == [1, 2] and len(result["parameters"]) == 4
    p1, p2 = (stage["expected_cut"] for stage in result["stages"])
    assert p1 < p2 == pytest.approx(result["expected_cut"])  # the second layer, started from the first, adds
    assert result["approximation_ratio"] == pytest.approx(result["expected_cut"] / result["optimum"])
    assert 0.8 < result["approximation_ratio"] <= 1


def test_sweep_runs_its_jobs_at_once_and_compares_them():
    state = asyncio.run(sweep(learning_rates=(0.2, 0.4), max_iterations=4, return_state=True))
    result = state.result()
    assert result["jobs"] == 2 and [row["learning_rate"] for row in result["rows"]] == [0.2, 0.4]
    assert all(row["iterations"] == 4 for row in result["rows"])
    best = min(result["rows"], key=lambda row: row["energy"])
    assert (result["best_learning_rate"], result["best_energy"]) == (best["learning_rate"], best["energy"])
    assert result["best_energy"] >= result["exact_energy"] - 1e-9  # variational: never below the ground state
    run = str(state.state_details.flow_run_id).replace("-", "")[:8]
    assert [row["job"] for row in result["rows"]] == [f"vqe-lr-0p2-{run}", f"vqe-lr-0p4-{run}"]  # a job says its rate
    artifacts = latest_artifacts(state.state_details.flow_run_id)
    assert "vqe-sweep-comparison" in artifacts


def test_resume_demo_finishes_from_the_checkpoint(tmp_path):
    result = asyncio.run(resume_demo(fail_at=3, checkpoint_location=str(tmp_path)))
    assert result["first_run_evaluated"] == 3
    assert result["second_run_evaluated"] == result["total_iterations"] - 3  # nothing evaluated twice
    assert abs(result["energy"] - result["exact_energy"]) < 1.6e-3  # chemical accuracy
    assert result["checkpoint"].startswith(str(tmp_path))
