"""The waiting tasks and the handle's log and metrics, over a scripted backend: an async wait pauses
without blocking the event loop, `logs(wait=True)` prints a growing log once, line by line, and the
`get_job_metrics` and `cancel_job` tasks answer what the backend says."""

import asyncio
import time

import pytest

from prefect_braket.backends.base import LogChunk
from prefect_braket.orchestration import handle as handles
from prefect_braket.orchestration import waiting
from prefect_braket.orchestration.handle import HybridJob

ARN = "local:job/scripted"


class ScriptedBackend:
    """A job that is RUNNING until `finish()`, whose log grows by what `append` adds."""

    def __init__(self):
        self.status = "RUNNING"
        self.lines: list[str] = []
        self.cancelled: list[str] = []
        self.polls = 0

    def get_job(self, arn):
        self.polls += 1
        assert self.polls < 100, "polled a job that never changes a hundred times: its wait does not pause"
        return {"jobArn": arn, "jobName": "scripted", "status": self.status, "events": []}

    def read_log(self, arn, cursor):
        start = cursor or 0
        # At most two lines a read, so a backlog takes several reads (`more`), as a real backend's chunks do.
        end = min(start + 2, len(self.lines))
        return LogChunk(self.lines[start:end], end, more=end < len(self.lines))

    def cancel_job(self, arn):
        self.cancelled.append(arn)
        return "CANCELLING"


def test_an_async_wait_leaves_the_event_loop_free_while_it_polls_and_pauses(monkeypatch):
    poll, pause = 0.6, 1.0
    marks: list[float] = []

    class Watcher:  # stands in for JobWatcher: one slow poll, one pause, then the job has ended
        def __init__(self, *args, **kwargs):
            self.steps, self.final, self.logger = 0, {"status": "COMPLETED"}, None

        def step(self):
            self.steps += 1
            marks.append(time.monotonic())
            if self.steps == 1:
                time.sleep(poll)  # a poll blocks on its backend call: in a worker thread, not in the loop
                marks.append(time.monotonic())
                return pause
            return None

        def ended(self, raise_on_failure):
            return self.final

    monkeypatch.setattr(waiting, "JobWatcher", Watcher)
    monkeypatch.setattr(waiting, "_forget", lambda job: None)

    async def main():
        ticks: list[float] = []
        done = asyncio.Event()

        async def tick():
            while not done.is_set():
                ticks.append(time.monotonic())
                await asyncio.sleep(0.01)

        ticker = asyncio.create_task(tick())
        await asyncio.sleep(0)  # the ticker runs before the wait starts
        meta = await waiting.wait_for_job_async.fn(object(), poll_interval_seconds=pause)
        done.set()
        await ticker
        return meta, ticks

    meta, ticks = asyncio.run(main())
    assert meta == {"status": "COMPLETED"}
    polled, paused, ended = marks
    assert ended - paused >= pause * 0.9  # the wait did pause

    def ticked_amid(start, end):
        # Ticks in the middle of a window: a blocked loop can tick at its edges, never in its middle.
        margin = (end - start) / 4
        return sum(start + margin < t < end - margin for t in ticks)

    # Blocking the loop (a poll in the coroutine, or time.sleep for the pause) stops the other
    # coroutine for the whole poll or pause; otherwise it ticks every 10 ms (some, on a loaded machine).
    assert ticked_amid(polled, paused) > 0, "the event loop was blocked while the job was polled"
    assert ticked_amid(paused, ended) > 0, "the event loop was blocked while the wait paused"


def test_logs_with_wait_prints_the_growing_log_once_until_the_job_ends(monkeypatch, capsys):
    backend = ScriptedBackend()
    backend.lines = ["one", "two", "three", "four", "five"]
    job = HybridJob(ARN, backend)
    pauses: list[float] = []

    def pause(seconds):  # each pause lets the job go on: more lines, then its end
        pauses.append(seconds)
        if len(pauses) == 1:
            backend.lines += ["six", "seven"]
        else:
            backend.lines.append("eight")
            backend.status = "COMPLETED"

    monkeypatch.setattr(handles.time, "sleep", pause)
    log = job.logs(wait=True, poll_interval_seconds=0.25)
    whole = ["one", "two", "three", "four", "five", "six", "seven", "eight"]
    assert log == "\n".join(whole)
    assert capsys.readouterr().out == "".join(f"{line}\n" for line in whole)  # each line printed once, in order
    # A backlog (five lines, three reads) is read without pausing; a pause only while the job runs.
    assert pauses == [0.25, 0.25]


def test_logs_without_wait_reads_what_is_there_and_returns():
    backend = ScriptedBackend()
    backend.lines = [f"line {i}" for i in range(5)]
    assert HybridJob(ARN, backend).logs() == "\n".join(backend.lines)  # over several bounded reads


def test_get_job_metrics_task_returns_the_jobs_metric_columns():
    backend = ScriptedBackend()
    backend.lines = ["Metrics - timestamp=1.0; loss=0.5; iteration_number=0;", "not a metric",
                     "Metrics - timestamp=2.0; loss=0.25; iteration_number=1;",
                     "Metrics - timestamp=3.0; loss=0.75; iteration_number=1;"]
    job = HybridJob(ARN, backend)
    assert waiting.get_job_metrics.fn(job) == {"timestamp": [1.0, 2.0, 3.0], "loss": [0.5, 0.25, 0.75],
                                               "iteration_number": [0.0, 1.0, 1.0]}
    by_iteration = waiting.get_job_metrics.fn(job, "iteration_number", "min")
    assert by_iteration["loss"] == [0.5, 0.25] and by_iteration["timestamp"] == [1.0, 2.0]


def test_cancel_job_task_asks_the_backend_and_logs_the_answer(monkeypatch):
    messages: list[str] = []

    class Logger:
        def info(self, message, *args):
            messages.append(message % args)

    monkeypatch.setattr(waiting, "get_run_logger", Logger)
    backend = ScriptedBackend()
    assert waiting.cancel_job.fn(HybridJob(ARN, backend)) == "CANCELLING"
    assert backend.cancelled == [ARN]
    assert messages == [f"Cancel requested for job {ARN}: CANCELLING"]


@pytest.mark.parametrize("failing", ["sync", "async"])
def test_a_wait_that_fails_cancels_its_job_unless_told_not_to(monkeypatch, failing):
    cancelled: list[object] = []

    class Watcher:
        def __init__(self, *args, **kwargs):
            self.logger = None

        def step(self):
            raise TimeoutError("gave up")

    monkeypatch.setattr(waiting, "JobWatcher", Watcher)
    monkeypatch.setattr(waiting, "cancel_unless_resumable", lambda job, error, logger: cancelled.append(error))

    def wait(**options):
        if failing == "sync":
            return waiting.wait_for_job.fn(object(), **options)
        return asyncio.run(waiting.wait_for_job_async.fn(object(), **options))

    with pytest.raises(TimeoutError):
        wait()
    assert [type(e) for e in cancelled] == [TimeoutError]
    with pytest.raises(TimeoutError):
        wait(cancel_on_exit=False)
    assert len(cancelled) == 1
