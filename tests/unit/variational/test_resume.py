"""Resuming a variational loop from its checkpoint, without Prefect's server: the flow's `_resume`
reads the checkpoint, and the loop goes on from the iteration after the last one saved.

In a flow the iteration cache also answers a run that starts over, so the flow-level tests cannot
tell resuming from starting over by energies or evaluated iterations; these tests can: the cost
function is a plain callable that records which iterations it was asked for."""

import logging
import math

import numpy as np
import pytest

from prefect_braket.variational.checkpoints import load_checkpoint, save_checkpoint
from prefect_braket.variational.flow import _resume
from prefect_braket.variational.loop import Iteration, LoopState, optimize
from prefect_braket.variational.optimizers import GradientDescent, ScipyMinimize

LOGGER = logging.getLogger("test-resume")


def cos_cost(asked: list[int]):
    """cos(x) at each point, recording the iterations it evaluates."""
    def evaluate(iteration, points):
        asked.append(iteration)
        return [math.cos(float(p[0])) for p in points]

    return evaluate


def run(state, optimizer, max_iterations, asked, saved=None, location=None, experiment_id="exp"):
    def record(state, step):
        if saved is not None:
            saved.append(step.iteration)
        if location is not None:
            save_checkpoint(location, experiment_id, state.to_checkpoint())

    assert optimize(state, optimizer, max_iterations, 0.0, cos_cost(asked), record)
    return state


def test_a_checkpoint_round_trips_every_field():
    state = LoopState(np.array([0.25, -1.5]), [Iteration(0, -0.5, 0.1, [0.0, -1.0], 0.2),
                                               Iteration(1, -0.7, 0.05, [0.25, -1.5], 0.3)], True, [0.0, -1.0])
    back = LoopState.from_checkpoint(state.to_checkpoint())
    assert back.parameters.tolist() == [0.25, -1.5] and back.parameters.dtype == float
    assert back.history == state.history
    assert back.converged is True and back.initial == [0.0, -1.0]
    assert back.next_iteration == 2
    # A checkpoint without the optional fields (an older one) is a state that has not converged.
    old = LoopState.from_checkpoint({"parameters": [1], "history": []})
    assert old.converged is False and old.initial is None and old.next_iteration == 0


def test_no_checkpoint_starts_at_the_initial_parameters(tmp_path):
    state = _resume(str(tmp_path), "fresh", [0.3, 0.4], LOGGER)
    assert state.parameters.tolist() == [0.3, 0.4] and state.history == [] and state.next_iteration == 0


def test_a_run_resumed_from_its_checkpoint_asks_only_for_the_iterations_after_it(tmp_path, caplog):
    location = str(tmp_path)
    straight_asked: list[int] = []
    straight = run(LoopState(np.array([0.5])), GradientDescent(0.2), 6, straight_asked)
    assert straight_asked == [0, 1, 2, 3, 4, 5]

    # The first run stops after three iterations, each checkpointed.
    first_asked: list[int] = []
    run(LoopState(np.array([0.5])), GradientDescent(0.2), 3, first_asked, location=location)
    assert len(load_checkpoint(location, "exp")["history"]) == 3

    with caplog.at_level(logging.INFO, logger=LOGGER.name):
        resumed = _resume(location, "exp", [123.0], LOGGER)  # the initial parameters are not used
    assert resumed.next_iteration == 3
    assert resumed.parameters.tolist() == pytest.approx(straight.history[3].parameters)
    assert "after iteration 2" in caplog.text

    asked: list[int] = []
    finished = run(resumed, GradientDescent(0.2), 6, asked)
    assert asked == [3, 4, 5]  # iterations 0-2 are not evaluated again
    assert [h.iteration for h in finished.history] == [0, 1, 2, 3, 4, 5]
    assert [h.energy for h in finished.history] == pytest.approx([h.energy for h in straight.history])
    assert finished.parameters.tolist() == pytest.approx(straight.parameters.tolist())


@pytest.mark.parametrize("optimizer", [GradientDescent(0.2), ScipyMinimize("COBYLA")], ids=["gradient", "scipy"])
def test_a_loop_paused_after_every_iteration_goes_on_as_one_run_would(optimizer):
    """A flow runs the loop in groups: each call stops where `pause` says and the next goes on."""
    pytest.importorskip("scipy")
    straight_asked: list[int] = []
    straight = run(LoopState(np.array([0.5])), optimizer, 6, straight_asked)
    asked: list[int] = []
    state, recorded, paused = LoopState(np.array([0.5])), [], 0
    while not optimize(state, optimizer, 6, 0.0, cos_cost(asked), lambda _, step: recorded.append(step.iteration),
                       pause=lambda: True):
        paused += 1
    assert asked == recorded == straight_asked == list(range(6))  # each iteration evaluated once, in order
    assert paused == 5  # one iteration per call: pause is asked only after a call's first
    assert [h.energy for h in state.history] == [h.energy for h in straight.history]
    assert state.parameters.tolist() == straight.parameters.tolist()
    never: list[int] = []
    state = LoopState(np.array([0.5]))
    assert optimize(state, optimizer, 6, 0.0, cos_cost(never), lambda *_: None, pause=lambda: False)
    assert never == straight_asked


def test_what_a_group_did_applies_to_a_state_that_stood_where_it_started():
    """A cached group's result: `since` from where it started, `advance` on a state standing there."""
    state = LoopState(np.array([0.5]))
    assert optimize(state, GradientDescent(0.2), 2, 0.0, cos_cost([]), lambda *_: None)
    standing = LoopState.from_checkpoint(state.to_checkpoint())
    assert optimize(state, GradientDescent(0.2), 5, 0.0, cos_cost([]), lambda *_: None)
    standing.advance(state.since(2))
    assert standing.history == state.history and standing.next_iteration == 5
    assert standing.parameters.tolist() == state.parameters.tolist() and standing.converged == state.converged


def test_a_resumed_scipy_run_replays_its_checkpointed_evaluations(tmp_path):
    pytest.importorskip("scipy")
    location = str(tmp_path)
    first_asked: list[int] = []
    run(LoopState(np.array([0.5])), ScipyMinimize("COBYLA"), 4, first_asked, location=location)
    assert first_asked == [0, 1, 2, 3]

    asked: list[int] = []
    finished = run(_resume(location, "exp", [9.0], LOGGER), ScipyMinimize("COBYLA"), 8, asked)
    assert asked == [4, 5, 6, 7]  # SciPy starts over; the first four evaluations come from the checkpoint
    assert finished.initial == [0.5]
    assert [h.iteration for h in finished.history] == list(range(8))
