"""What a flow run's `Reporter` sends while a loop iterates: every iteration to the checkpoint, the
progress and a log line at most every `PROGRESS_INTERVAL_SECONDS`, the table and summary once.

The artifact calls are recorded here instead of sent (the integration tests send them to a real
server); the checkpoints are real files.
"""

import logging
import time

import numpy as np
import pytest

from prefect_braket import BraketDevice
from prefect_braket.variational import publishing
from prefect_braket.variational.checkpoints import load_checkpoint
from prefect_braket.variational.loop import Iteration, LoopState
from prefect_braket.variational.optimizers import GradientDescent
from prefect_braket.variational.publishing import PROGRESS_INTERVAL_SECONDS, Reporter


class Clock:
    """`time.monotonic` for the publishing module, moved by hand."""

    def __init__(self):
        self.now = 1000.0

    def monotonic(self):
        return self.now


@pytest.fixture
def api(monkeypatch):
    calls = []
    monkeypatch.setattr(publishing, "publish_progress", lambda percent, key, description: calls.append(
        ("create-progress", percent, key)) or "progress-id")
    monkeypatch.setattr(publishing, "update_progress", lambda artifact_id, percent, description: calls.append(
        ("update-progress", percent, description, artifact_id)))
    monkeypatch.setattr(publishing, "publish_table", lambda rows, key, description: calls.append(
        ("table", len(rows), key)))
    monkeypatch.setattr(publishing, "publish_markdown", lambda markdown, key, description: calls.append(
        ("summary", key)))
    return calls


def step(state, iteration):
    done = Iteration(iteration, energy=-1.0 - iteration / 100, gradient_norm=0.1, parameters=[0.1 * iteration],
                     seconds=0.25)
    state.history.append(done)
    state.parameters = np.array([0.1 * (iteration + 1)])
    return done


def test_every_iteration_is_checkpointed_and_shown_at_most_every_interval(tmp_path, monkeypatch, api, caplog):
    clock = Clock()
    monkeypatch.setattr(publishing, "time", clock)
    state = LoopState(np.array([0.0]))
    logger = logging.getLogger("test-reporter")
    with caplog.at_level(logging.INFO, logger="test-reporter"), \
            Reporter("exp", str(tmp_path), logger, max_iterations=20, first_iteration=0) as reporter:
        for iteration in range(18):  # an iteration every quarter of the interval
            clock.now += PROGRESS_INTERVAL_SECONDS / 4
            reporter.record(state, step(state, iteration))
        reporter.finish(state, GradientDescent(), 18, -1.2, BraketDevice(), 0)

    assert api[0] == ("create-progress", 0.0, "exp-progress")
    live, end = api[1:-3], api[-3:]
    assert [(call[0], call[1], call[3]) for call in live] == [("update-progress", percent, "progress-id")
                                                             for percent in (20.0, 40.0, 60.0, 80.0)]
    assert live[0][2].startswith("Iteration 3 of exp (at most 20): energy -1.03")
    lines = [r.getMessage().split(":")[0] for r in caplog.records if r.getMessage().startswith("Iteration")]
    assert lines == ["Iteration 3", "Iteration 7", "Iteration 11", "Iteration 15"]
    assert end[0][:2] == ("update-progress", 100.0) and end[0][2].startswith("Finished exp after iteration 17")
    assert end[1:] == [("table", 18, "exp-iterations"), ("summary", "exp-summary")]
    saved = load_checkpoint(str(tmp_path), "exp")
    assert len(saved["history"]) == 18 and saved["parameters"] == pytest.approx([1.8])


def test_a_failing_checkpoint_store_stops_the_loop_and_the_run_still_says_how_it_ended(tmp_path, monkeypatch, api):
    def full_store(location, experiment_id, checkpoint):
        raise OSError("the store is full")

    monkeypatch.setattr(publishing, "save_checkpoint", full_store)
    state = LoopState(np.array([0.0]))
    with pytest.raises(OSError, match="the store is full"):
        with Reporter("exp", str(tmp_path), logging.getLogger("test-reporter"), 100, 0) as reporter:
            for iteration in range(100):  # the loop goes on until a record finds the write failed
                reporter.record(state, step(state, iteration))
                time.sleep(0.01)
    stopped_after = state.history[-1].iteration
    assert stopped_after < 99
    assert api[-2][0] == "update-progress"
    assert api[-2][2].startswith(f"Failed after iteration {stopped_after} of exp: OSError.")
    assert api[-1] == ("table", stopped_after + 1, "exp-iterations")
