"""Resuming a variational loop from its checkpoint, without Prefect's server: the flow's `_resume`
reads the checkpoint, and the loop goes on from the iteration after the last one saved.

In a flow the iteration cache also answers a run that starts over, so the flow-level tests cannot
tell resuming from starting over by energies or evaluated iterations; these tests can: the cost
function is a plain callable that records which iterations it was asked for."""

import logging
import math
import time

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


class Halving:
    """An optimiser that moves the parameter by one each iteration and records what it is asked; the cost
    halves each iteration (1, 0.5, 0.25, ...), so energy changes are exact binary fractions."""

    def __init__(self):
        self.asked: list[tuple[str, int]] = []

    def points(self, params, iteration):
        self.asked.append(("points", iteration))
        return [params]

    def step(self, params, values, iteration):
        self.asked.append(("step", iteration))
        return params + 1.0, np.float64(values[0]), 0.25 * iteration


def test_a_loop_converges_at_the_first_energy_change_below_its_tolerance_and_records_each_step():
    optimizer, state = Halving(), LoopState(np.array([0.0]))
    halving = lambda iteration, points: [0.5 ** iteration for _ in points]  # noqa: E731
    started = time.perf_counter()
    assert optimize(state, optimizer, 10, 0.25, halving, lambda *_: None)
    elapsed = time.perf_counter() - started
    # Changes 0.5, 0.25 (not below 0.25), then 0.125: converged after iteration 3.
    assert state.converged is True and [h.iteration for h in state.history] == [0, 1, 2, 3]
    assert [h.energy for h in state.history] == [1.0, 0.5, 0.25, 0.125]
    assert all(type(h.energy) is float for h in state.history)
    assert [h.gradient_norm for h in state.history] == [0.0, 0.25, 0.5, 0.75]
    assert [h.parameters for h in state.history] == [[0.0], [1.0], [2.0], [3.0]] and state.parameters.tolist() == [4.0]
    assert all(0 <= h.seconds <= elapsed for h in state.history)
    assert optimizer.asked == [(what, i) for i in range(4) for what in ("points", "step")]


def test_whole_number_parameters_from_a_checkpoint_or_a_group_move_by_fractions():
    """Parameters are floats however they were written: a gradient step shifts a point in place, and an
    integer array would truncate the shift."""
    restored = LoopState.from_checkpoint({"parameters": [1], "history": []})
    advanced = LoopState(np.array([0.0]))
    advanced.advance({"history": [], "parameters": [1], "converged": False, "initial": None})
    for state in (restored, advanced):
        points: list[list[float]] = []

        def evaluate(iteration, at, points=points):
            points.extend(p.tolist() for p in at)
            return [math.cos(p[0]) for p in at]

        optimize(state, GradientDescent(0.2), 1, 0.0, evaluate, lambda *_: None)
        assert points == [[1.0], [1.0 + math.pi / 2], [1.0 - math.pi / 2]]


def scipy_points(method, tolerance, options, max_iterations):
    """The points SciPy's own run of `method` evaluates on cos, and whether it converged."""
    from scipy.optimize import minimize

    points: list[list[float]] = []
    outcome = minimize(lambda x: points.append(x.tolist()) or math.cos(x[0]), [0.5], method=method,
                       tol=tolerance or None, options={"maxiter": max_iterations, **options})
    return points, bool(outcome.success)


@pytest.mark.parametrize(("method", "tolerance", "options"), [("COBYLA", 0.5, {}), ("COBYLA", 0.0, {"rhobeg": 0.1}),
                                                              ("Nelder-Mead", 0.01, {})])
def test_a_scipy_run_is_scipys_own_run_of_its_method_tolerance_and_options(method, tolerance, options):
    pytest.importorskip("scipy")
    expected, success = scipy_points(method, tolerance, options, 200)
    assert success and len(expected) < 200
    state, asked = LoopState(np.array([0.5])), []
    started = time.perf_counter()
    assert optimize(state, ScipyMinimize(method, options), 200, tolerance, cos_cost(asked), lambda *_: None)
    elapsed = time.perf_counter() - started
    assert [h.parameters for h in state.history] == expected and asked == list(range(len(expected)))
    assert state.converged is True
    assert all(math.isnan(h.gradient_norm) and 0 <= h.seconds <= elapsed for h in state.history)
    assert state.parameters.tolist() == min(state.history, key=lambda h: h.energy).parameters


def test_a_scipy_run_evaluates_at_most_max_iterations_and_has_not_converged_then():
    pytest.importorskip("scipy")
    state, asked = LoopState(np.array([0.5])), []
    assert optimize(state, ScipyMinimize("Nelder-Mead"), 5, 0.0, cos_cost(asked), lambda *_: None)
    assert asked == [0, 1, 2, 3, 4] and len(state.history) == 5  # Nelder-Mead's 5 iterations take 10 evaluations
    assert state.converged is False


def test_a_resumed_scipy_run_replays_an_evaluation_only_at_exactly_its_point():
    """A checkpointed evaluation a billionth away from the point SciPy asks for is evaluated anew."""
    pytest.importorskip("scipy")
    state = LoopState(np.array([0.5]), [Iteration(0, 99.0, float("nan"), [0.5 + 1e-9], 0.0)], initial=[0.5])
    asked: list[int] = []
    assert optimize(state, ScipyMinimize("COBYLA"), 3, 0.0, cos_cost(asked), lambda *_: None)
    assert asked == [0, 1, 2] and state.history[0].energy == math.cos(0.5)
