"""A flow's groups of iterations (`variational.flow._Loop`): what each iteration sends to the device."""

import numpy as np

from prefect_braket.variational import flow as variational_flow
from prefect_braket.variational.flow import _Loop
from prefect_braket.variational.loop import LoopState
from prefect_braket.variational.optimizers import GradientDescent


class RecordingCost:
    """A cost that records the client token each evaluation was given."""

    def __init__(self):
        self.tokens = []

    def evaluate(self, device, points, shots, client_token=None):
        self.tokens.append(client_token)
        return [float(np.cos(p[0])) for p in points]


def group(cost, iterations=3):
    return _Loop(cost, device=None, shots=100, optimizer=GradientDescent(), max_iterations=iterations,
                 tolerance=0.0, group_seconds=60.0, record=lambda *_: None)


def test_each_iteration_of_a_group_sends_a_token_of_its_own_and_a_retry_the_same(monkeypatch):
    # One task run's token for the whole group: Braket would answer iterations 1 and 2 with iteration 0's tasks.
    monkeypatch.setattr(variational_flow, "client_token", lambda: "the-task-runs-token")
    first = RecordingCost()
    assert group(first).run(LoopState(np.array([0.1])))
    assert len(first.tokens) == 3 and len(set(first.tokens)) == 3
    assert all(len(token) <= 64 for token in first.tokens)  # Braket's clientToken limit
    retried = RecordingCost()  # the task run again, as its retry runs it: the same iterations, the same tokens
    assert group(retried).run(LoopState(np.array([0.1])))
    assert retried.tokens == first.tokens
    monkeypatch.setattr(variational_flow, "client_token", lambda: "another-flow-runs-token")
    other = RecordingCost()
    group(other).run(LoopState(np.array([0.1])))
    assert not set(other.tokens) & set(first.tokens)


def test_outside_a_task_run_no_token_is_sent(monkeypatch):
    monkeypatch.setattr(variational_flow, "client_token", lambda: None)
    cost = RecordingCost()
    group(cost, iterations=2).run(LoopState(np.array([0.1])))
    assert cost.tokens == [None, None]
