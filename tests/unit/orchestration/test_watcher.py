"""What a wait forwards of a job, step by step, with a scripted job and a recording logger in place
of a backend and Prefect's run logger: log lines (many to a record, capped, cut short), events,
queue positions and status changes, each once and in order. tests/integration/orchestration/
test_log_forwarding.py reads the same from a real flow run's logs."""

import pytest

from prefect_braket.backends.base import LogChunk
from prefect_braket.orchestration import watcher as watching
from prefect_braket.orchestration.watcher import (
    LOG_LINE_MAX_CHARS,
    LOG_RECORD_MAX_CHARS,
    LOG_RECORD_MAX_LINES,
    JobWatcher,
    max_log_lines_setting,
)


class Logger:
    """Keeps each record as the message it formats to."""

    def __init__(self):
        self.messages: list[str] = []

    def info(self, message, *args):
        self.messages.append(message % args)

    warning = error = info


class ScriptedJob:
    """A job whose polls answer `metas` in turn (the last one repeated) and whose log reads answer
    `chunks` in turn (then nothing new)."""

    name = "job-1"
    arn = "local:job/job-1"

    def __init__(self, metas, chunks):
        self.metas, self.chunks = list(metas), list(chunks)
        self.backend = self
        self.cursors: list = []

    def metadata(self):
        return self.metas.pop(0) if len(self.metas) > 1 else self.metas[0]

    def read_log(self, arn, cursor):
        assert arn == self.arn
        self.cursors.append(cursor)
        return self.chunks.pop(0) if self.chunks else LogChunk([], cursor)

    def replace_if_lost(self, attempts):
        return False


def meta(status, events=(), position=None):
    return {"jobName": "job-1", "jobArn": "local:job/job-1", "status": status,
            "events": [{"eventType": e} for e in events], "queueInfo": {"position": position}}


def wait(job, max_log_lines=None, steps=50):
    logger = Logger()
    # A long poll interval: while a backlog is read the job is not polled again (so each test knows
    # which answer each poll gets); the steps do not pause, whatever the interval.
    watcher = JobWatcher(job, None, 10.0, 60.0, None, logger=logger, max_log_lines=max_log_lines)
    for _ in range(steps):
        if watcher.step() is None:
            return watcher, logger.messages
    raise AssertionError("the wait did not end")


def forwarded(messages):
    return [m for m in messages if m.startswith("[job-1] ")]


def test_every_line_is_forwarded_in_order_many_to_a_record():
    lines = [f"line {i}" for i in range(450)]
    job = ScriptedJob([meta("RUNNING"), meta("COMPLETED")],
                      [LogChunk(lines[:300], 1, more=True), LogChunk(lines[300:], 2)])
    watcher, messages = wait(job)
    records = forwarded(messages)
    assert [line.removeprefix("[job-1] ") for r in records for line in r.split("\n")] == lines
    # 300 lines in the first chunk: a record of 200 then one of 100; the second chunk's 150 in one.
    assert [r.count("\n") + 1 for r in records] == [LOG_RECORD_MAX_LINES, 100, 150]
    assert job.cursors[:3] == [None, 1, 2]  # each read goes on from the cursor before it
    assert watcher.lines_forwarded == 450 and watcher.lines_withheld == 0
    assert not any("not forwarded" in m for m in messages)
    assert watcher.final["status"] == "COMPLETED"


def test_a_record_stays_under_its_size_in_characters():
    line = "x" * 1500
    job = ScriptedJob([meta("COMPLETED")], [LogChunk([line] * 30)])
    _, messages = wait(job)
    records = forwarded(messages)
    assert len(records) > 1 and all(len(r) <= LOG_RECORD_MAX_CHARS for r in records)
    assert sum(r.count("\n") + 1 for r in records) == 30


def test_a_long_line_is_cut_with_a_note_saying_how_much():
    job = ScriptedJob([meta("COMPLETED")], [LogChunk(["y" * (LOG_LINE_MAX_CHARS + 1234), "short"])])
    _, messages = wait(job)
    cut, short = forwarded(messages)[0].split("\n")
    assert cut.startswith("[job-1] " + "y" * LOG_LINE_MAX_CHARS + " … [1,234 more characters")
    assert "y" * (LOG_LINE_MAX_CHARS + 1) not in cut
    assert short == "[job-1] short"


def test_lines_past_the_cap_are_counted_once_at_the_end_and_their_metrics_still_read():
    lines = [f"line {i}" for i in range(10)] + [f"Metrics - iteration_number={i}; loss={i / 10};" for i in range(5)]
    job = ScriptedJob([meta("RUNNING"), meta("COMPLETED")],
                      [LogChunk(lines[:6], 1, more=True), LogChunk(lines[6:], 2)])
    watcher, messages = wait(job, max_log_lines=4)
    assert [m.removeprefix("[job-1] ") for r in forwarded(messages) for m in r.split("\n")] == lines[:4]
    assert watcher.lines_withheld == 11
    notices = [m for m in messages if "logged more than max_log_lines=4" in m]
    assert len(notices) == 1  # said once, when the first line is withheld
    closing = [m for m in messages if "not forwarded (max_log_lines=4" in m]
    assert len(closing) == 1 and closing[0].startswith("11 more lines of job job-1's log")
    assert "HybridJob.attach('local:job/job-1').logs()" in closing[0]
    assert messages.index(closing[0]) == len(messages) - 1 - messages[::-1].index(closing[0])
    assert watcher.metrics_table()["iteration_number"] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert watcher.top_iteration == 4.0


def test_the_closing_line_names_where_the_whole_log_is():
    job = ScriptedJob([meta("COMPLETED")], [LogChunk(["a", "b", "c"], source="/jobs/job-1/log.txt")])
    _, messages = wait(job, max_log_lines=1)
    assert messages[-1].endswith("logs(), or in /jobs/job-1/log.txt.")
    assert messages[-1].startswith("2 more lines")


def test_no_lines_forwarded_with_a_cap_of_zero():
    job = ScriptedJob([meta("COMPLETED")], [LogChunk(["a", "b"])])
    watcher, messages = wait(job, max_log_lines=0)
    assert forwarded(messages) == [] and watcher.lines_withheld == 2


def test_events_positions_and_statuses_are_logged_once_each_in_order():
    job = ScriptedJob(
        [meta("QUEUED", ["WAITING_FOR_PRIORITY"], "2"), meta("QUEUED", ["WAITING_FOR_PRIORITY"], "2"),
         meta("QUEUED", ["WAITING_FOR_PRIORITY"], "1"),
         meta("RUNNING", ["WAITING_FOR_PRIORITY", "RUNNING"], "None"),
         meta("COMPLETED", ["WAITING_FOR_PRIORITY", "RUNNING", "COMPLETED"])],
        [LogChunk([]), LogChunk([]), LogChunk([]), LogChunk(["working"]), LogChunk([])])
    _, messages = wait(job)
    assert [m for m in messages if m.startswith("Job job-1 ")] == [
        "Job job-1 event WAITING_FOR_PRIORITY",
        "Job job-1 is queued at position 2",
        "Job job-1 is QUEUED",
        "Job job-1 is queued at position 1",
        "Job job-1 event RUNNING",
        "Job job-1 is RUNNING",
        "Job job-1 event COMPLETED",
        "Job job-1 is COMPLETED",
    ]
    assert "[job-1] working" in messages
    # The end comes after the job's last line.
    assert messages.index("Job job-1 is COMPLETED") > messages.index("[job-1] working")


def test_an_event_message_is_logged_with_it():
    ended = meta("FAILED")
    ended["events"] = [{"eventType": "FAILED", "message": "AlgorithmError: boom"}]
    _, messages = wait(ScriptedJob([ended], []))
    assert "Job job-1 event FAILED: AlgorithmError: boom" in messages


def test_a_job_that_ended_has_its_backlog_read_to_the_end_before_its_end_is_logged():
    job = ScriptedJob([meta("COMPLETED")], [LogChunk(["one"], 1, more=True), LogChunk(["two"], 2, more=True),
                                            LogChunk(["three"], 3)])
    watcher, messages = wait(job)
    assert [m for m in messages if m.startswith("[job-1]")] == ["[job-1] one", "[job-1] two", "[job-1] three"]
    assert messages[-1] == "Job job-1 is COMPLETED"
    assert watcher.final is not None


def test_a_wait_past_its_deadline_raises(monkeypatch):
    job = ScriptedJob([meta("RUNNING")], [])
    watcher = JobWatcher(job, None, 10.0, 0.01, 5.0, logger=Logger())
    clock = [1000.0]
    monkeypatch.setattr(watching.time, "monotonic", lambda: clock[0])
    watcher.deadline = 1005.0
    assert watcher.step() is not None
    clock[0] = 1005.0
    with pytest.raises(TimeoutError, match="did not end within 5.0 s"):
        watcher.step()


def test_max_log_lines_setting(monkeypatch):
    monkeypatch.delenv("PREFECT_BRAKET_MAX_LOG_LINES", raising=False)
    assert max_log_lines_setting() == 10_000 and max_log_lines_setting(0) == 0
    monkeypatch.setenv("PREFECT_BRAKET_MAX_LOG_LINES", " 25 ")
    assert max_log_lines_setting() == 25 and max_log_lines_setting(7) == 7
    monkeypatch.setenv("PREFECT_BRAKET_MAX_LOG_LINES", "  ")
    assert max_log_lines_setting() == 10_000
    monkeypatch.setenv("PREFECT_BRAKET_MAX_LOG_LINES", "-3")
    with pytest.raises(ValueError, match=r"PREFECT_BRAKET_MAX_LOG_LINES='-3' is negative"):
        max_log_lines_setting()
    with pytest.raises(ValueError, match=r"^max_log_lines=-1 is negative"):
        max_log_lines_setting(-1)
    monkeypatch.setenv("PREFECT_BRAKET_MAX_LOG_LINES", "lots")
    with pytest.raises(ValueError, match=r"'lots' is not a whole number.*default \(10000\)"):
        max_log_lines_setting()

