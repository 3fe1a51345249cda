"""Who cancels a job when its wait stops early or its flow run ends badly (`orchestration.ownership`),
for an Amazon Braket job: a scripted backend stands in for Braket, and the current flow run's id is
set by the test. The same code serves the embedded engine (tests/integration/orchestration)."""

from types import SimpleNamespace

import pytest

from prefect_braket.core.errors import SubmissionInProgress
from prefect_braket.orchestration import ownership
from prefect_braket.orchestration.handle import HybridJob
from prefect_braket.orchestration.ownership import OWNER_TAG, _cancel_jobs_of_ended_flow, cancel_unless_resumable

ARN = "arn:aws:braket:us-east-1:123456789012:job/train-1"


class Braket:
    """GetJob and CancelJob of one job, recorded."""

    def __init__(self, owner, status="RUNNING"):
        self.owner, self.status, self.cancelled = owner, status, []

    def get_job(self, arn):
        return {"jobArn": arn, "jobName": arn.rsplit("/", 1)[1], "status": self.status,
                "tags": {OWNER_TAG: self.owner} if self.owner else {}}

    def cancel_job(self, arn):
        self.cancelled.append(arn)
        self.status = "CANCELLING"
        return "CANCELLING"


class Logger:
    def __init__(self):
        self.messages = []

    def info(self, message, *args):
        self.messages.append(message % args)

    warning = info


@pytest.fixture
def in_flow_run(monkeypatch):
    monkeypatch.setattr(ownership, "current_flow_run_id", lambda: "run-1")


@pytest.mark.parametrize("error", [TimeoutError("gave up"), KeyboardInterrupt(), RuntimeError("flow cancelled")],
                         ids=["timeout", "interrupt", "other"])
def test_the_submitting_flow_runs_job_is_cancelled_when_its_wait_stops_early(in_flow_run, error):
    braket, logger = Braket(owner="run-1"), Logger()
    cancel_unless_resumable(HybridJob(ARN, braket), error, logger)
    assert braket.cancelled == [ARN]
    assert logger.messages == [f"Waiting for job {ARN} stopped early ({type(error).__name__}); the job was "
                               "cancelled (CANCELLING)."]


def test_a_transient_error_leaves_the_job_for_the_retry(in_flow_run):
    braket = Braket(owner="run-1")
    cancel_unless_resumable(HybridJob(ARN, braket), SubmissionInProgress("try again"), Logger())
    assert braket.cancelled == []


def test_a_job_another_flow_run_submitted_keeps_running(in_flow_run):
    for owner in ("run-2", None):
        braket, logger = Braket(owner=owner), Logger()
        cancel_unless_resumable(HybridJob(ARN, braket), TimeoutError("gave up"), logger)
        assert braket.cancelled == []
        assert logger.messages == [f"Stopped waiting for job {ARN} (TimeoutError); it keeps running, since this "
                                   "flow run did not submit it."]


def test_outside_a_flow_run_no_job_is_cancelled(monkeypatch):
    monkeypatch.setattr(ownership, "current_flow_run_id", lambda: None)
    braket = Braket(owner="run-1")
    cancel_unless_resumable(HybridJob(ARN, braket), TimeoutError("gave up"), Logger())
    assert braket.cancelled == []


def test_a_job_that_already_ended_is_not_cancelled(in_flow_run):
    braket = Braket(owner="run-1", status="COMPLETED")
    cancel_unless_resumable(HybridJob(ARN, braket), TimeoutError("gave up"), Logger())
    assert braket.cancelled == []


def test_a_flow_run_that_crashes_cancels_its_unfinished_jobs_only(monkeypatch):
    running, ended, other = Braket("run-1"), Braket("run-1", status="COMPLETED"), Braket("run-2")
    jobs = {HybridJob(ARN, running), HybridJob(ARN.replace("train-1", "train-2"), ended)}
    theirs = HybridJob(ARN.replace("train-1", "train-3"), other)
    monkeypatch.setattr(ownership, "_unfinished", {"run-1": jobs, "run-2": {theirs}})
    _cancel_jobs_of_ended_flow(None, SimpleNamespace(id="run-1", name="crashed-run"), SimpleNamespace(name="Crashed"))
    assert running.cancelled == [ARN] and ended.cancelled == [] and other.cancelled == []
    assert ownership._unfinished == {"run-2": {theirs}}  # the ended run's jobs are forgotten, others kept
