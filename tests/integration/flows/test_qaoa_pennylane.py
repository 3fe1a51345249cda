"""Braket's "QAOA with PennyLane in a hybrid job" example as a flow: trained in a job, metrics live in
the run, checkpointed every step, and continued by a second job from the first one's checkpoint."""

import json
import sys

import pytest

from helpers.paths import FLOWS
from helpers.runs import latest_artifacts
from prefect_braket.orchestration.context import artifact_key

pytest.importorskip("pennylane", reason="PennyLane and Braket's PennyLane plugin are in the test extra")
sys.path.insert(0, str(FLOWS))

from qaoa_pennylane import qaoa_pennylane  # noqa: E402

SMALL = {"num_nodes": 4, "num_edges": 4, "graph_seed": 3, "p": 1}


def test_trains_in_a_job_with_live_metrics_and_continues_from_its_checkpoint(engine):
    first_state = qaoa_pennylane(**SMALL, steps=2, return_state=True)
    first = first_state.result()
    assert (first["first_iteration"], first["iterations"]) == (0, 2)
    table = json.loads(latest_artifacts(first_state.state_details.flow_run_id)[
        f"{artifact_key(first['job_name'])}-metrics"].data)
    assert table["iteration_number"] == [0.0, 1.0] and table["loss"][-1] == pytest.approx(first["cost"])
    checkpoint = json.loads((engine.job_directory(first["job_arn"]) / "checkpoints" /
                             f"{first['job_name']}.json").read_text())["dataDictionary"]
    assert checkpoint["iteration"] == 1 and checkpoint["params"] == first["params"]

    second = qaoa_pennylane(**SMALL, steps=4, resume_from=first["job_arn"])
    assert (second["first_iteration"], second["iterations"]) == (2, 4)
    assert second["cost"] < first["cost"]  # training went on from where the first job stopped
    from prefect_braket import HybridJob

    assert HybridJob.attach(second["job_arn"]).metrics("iteration_number")["iteration_number"] == [2.0, 3.0]
