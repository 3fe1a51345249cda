"""What a wait forwards of a job, step by step, with a scripted job and a recording logger in place
of a backend and Prefect's run logger: log lines (many to a record, capped, cut short), events,
queue positions and status changes, each once and in order; how a job that did not complete ends
the wait; what the artifacts show of metric values. tests/integration/orchestration/
test_log_forwarding.py reads the same from a real flow run's logs."""

import pickle
from datetime import datetime, timedelta, timezone

import pytest

from prefect_braket.backends.base import LogChunk
from prefect_braket.core.errors import JobFailedError
from prefect_braket.core.spec import HIDDEN_HYPERPARAMETER, shown_hyperparameters
from prefect_braket.orchestration import watcher as watching
from prefect_braket.orchestration.watcher import (
    LOG_LINE_MAX_CHARS,
    LOG_RECORD_MAX_CHARS,
    LOG_RECORD_MAX_LINES,
    JobWatcher,
    max_log_lines_setting,
    shown_metric,
)


class Logger:
    """Keeps each record as the message it formats to."""

    def __init__(self):
        self.messages: list[str] = []
        self.errors: list[str] = []

    def info(self, message, *args):
        self.messages.append(message % args)

    warning = info

    def error(self, message, *args):
        self.errors.append(message % args)
        self.info(message, *args)


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


def wait(job, max_log_lines=None, steps=50, logger=None):
    logger = logger or Logger()
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



START = datetime(2026, 1, 1, tzinfo=timezone.utc)
TRACEBACK = ["Traceback (most recent call last):", '  File "/opt/container.py", line 109, in <module>',
             "    run()", '  File "<dynamic-code>", line 15, in train', "    raise ValueError('boom')",
             "ValueError: boom"]


def ended(status, reason=None):
    answer = meta(status, [status])
    answer.update(createdAt=START, startedAt=START + timedelta(seconds=1), endedAt=START + timedelta(seconds=3.5))
    return answer if reason is None else {**answer, "failureReason": reason}


def test_a_failed_job_ends_the_wait_with_one_line_naming_its_reason_its_frame_and_its_log():
    failed = ended("FAILED", "AlgorithmError: ValueError: boom\nmore of the reason")
    job = ScriptedJob([failed], [LogChunk(["working", *TRACEBACK], source="/jobs/job-1/log.txt")])
    watcher, _ = wait(job)
    with pytest.raises(JobFailedError) as caught:
        watcher.ended()
    message = str(caught.value)
    assert message == ('Job job-1 FAILED after 2.5 s: AlgorithmError: ValueError: boom (raised at '
                       'File "<dynamic-code>", line 15, in train). Its whole log: '
                       'HybridJob.attach("local:job/job-1").logs(), or /jobs/job-1/log.txt.')
    # The job's traceback is in its log, forwarded already: the error carries it as data, not as text.
    assert caught.value.log_tail == ["working", *TRACEBACK]
    assert caught.value.failure_reason == failed["failureReason"] and caught.value.status == "FAILED"
    # Prefect keeps a failed task run's exception pickled, to raise it wherever the run's result is read.
    copy = pickle.loads(pickle.dumps(caught.value))
    assert type(copy) is JobFailedError and str(copy) == message and copy.log_tail == caught.value.log_tail


def test_a_cancelled_job_fails_the_wait_too_and_a_completed_one_does_not():
    watcher, _ = wait(ScriptedJob([ended("CANCELLED")], []))
    with pytest.raises(JobFailedError, match=r"^Job job-1 CANCELLED after 2.5 s\. Its whole log"):
        watcher.ended()
    watcher, _ = wait(ScriptedJob([ended("COMPLETED")], []))
    assert watcher.ended()["status"] == "COMPLETED"


def test_a_wait_told_to_tolerate_failure_logs_the_error_once_and_returns_the_metadata():
    logger = Logger()
    watcher, _ = wait(ScriptedJob([ended("FAILED", "AlgorithmError: ValueError: boom")], [LogChunk(TRACEBACK)]),
                      logger=logger)
    assert logger.errors == []  # nothing at ERROR until the wait knows whether to raise
    assert watcher.ended(raise_on_failure=False)["status"] == "FAILED"
    assert len(logger.errors) == 1 and logger.errors[0].startswith("Job job-1 FAILED after 2.5 s: AlgorithmError")
    assert "\n" not in logger.errors[0]


def test_the_error_keeps_only_the_end_of_a_long_log():
    lines = [f"line {i}" for i in range(100)]
    watcher, _ = wait(ScriptedJob([ended("FAILED", "AlgorithmError: x")], [LogChunk(lines)]))
    with pytest.raises(JobFailedError) as caught:
        watcher.ended()
    assert caught.value.log_tail == lines[-20:]
    assert "raised at" not in str(caught.value)  # no traceback, no frame named


def test_artifacts_show_metric_values_rounded_and_timestamps_in_iso_utc():
    assert shown_metric("timestamp", 1796114373.0419579) == "2026-12-01T08:39:33Z"
    assert shown_metric("loss", 0.30000000000000004) == 0.3
    assert shown_metric("loss", 1.234e-12) == 1.234e-12  # small values keep their digits
    assert shown_metric("energy", -1.13728383448851) == -1.137283834
    assert shown_metric("iteration_number", 4.0) == 4 and type(shown_metric("iteration_number", 4.0)) is int
    assert shown_metric("iteration_number", 4.5) == 4.5
    assert shown_metric("loss", None) is None and shown_metric("node_id", "algo-1") == "algo-1"


def test_hyperparameters_that_may_be_credentials_are_hidden():
    shown = shown_hyperparameters({
        "learning_rate": "0.05", "api_key": "sk-123", "DB_PASSWORD": "hunter2", "auth": "Bearer x",
        "config": "{'token': 'abc'}", "note": "AKIAIOSFODNN7EXAMPLE",
        "other": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "device": "BraketDevice{device_arn='arn:aws:braket:::device/quantum-simulator/amazon/sv1', "
                  "aws_credentials=AwsCredentials{profile_name=None, keys hidden}}",
    })
    assert shown.pop("learning_rate") == "0.05" and shown.pop("device").startswith("BraketDevice{")
    assert shown == dict.fromkeys(["api_key", "DB_PASSWORD", "auth", "config", "note", "other"], HIDDEN_HYPERPARAMETER)


def test_a_record_holds_up_to_its_size_exactly_and_a_line_of_the_cap_whole():
    # Seven entries of 2,000 characters ("[job-1] " and the line) and one of 1,993 join to 16,000 exactly.
    exact = ["x" * (LOG_LINE_MAX_CHARS - 8)] * 7 + ["y" * 1985]
    over = ["x" * (LOG_LINE_MAX_CHARS - 8)] * 7 + ["y" * 1986]
    job = ScriptedJob([meta("RUNNING"), meta("COMPLETED")], [LogChunk(exact + exact, 1, more=True),
                                                              LogChunk(over, 2)])
    _, messages = wait(job)
    records = forwarded(messages)
    assert [len(r) for r in records] == [LOG_RECORD_MAX_CHARS, LOG_RECORD_MAX_CHARS, 14_006, 1994]
    assert "more characters" not in "".join(records)  # a line of LOG_LINE_MAX_CHARS is not cut
    whole = "z" * LOG_LINE_MAX_CHARS
    _, messages = wait(ScriptedJob([meta("COMPLETED")], [LogChunk([whole])]))
    assert forwarded(messages) == ["[job-1] " + whole]


def test_a_line_with_percent_signs_is_forwarded_as_it_is():
    lines = [f"{i}% done, 100%s" for i in range(250)]  # two records: both are formatted as data
    _, messages = wait(ScriptedJob([meta("COMPLETED")], [LogChunk(lines)]))
    assert [line.removeprefix("[job-1] ") for r in forwarded(messages) for line in r.split("\n")] == lines


def test_a_job_without_events_or_with_a_queue_position_of_none_logs_only_its_status():
    quiet = meta("QUEUED", position="None")
    del quiet["events"]
    _, messages = wait(ScriptedJob([quiet, meta("COMPLETED")], []))
    assert [m for m in messages if m.startswith("Job job-1 ")] == ["Job job-1 is QUEUED", "Job job-1 is COMPLETED"]


def test_the_queue_positions_seen_are_kept_each_change_once():
    job = ScriptedJob([meta("QUEUED", position="3"), meta("QUEUED", position="3"), meta("QUEUED", position="1"),
                       meta("COMPLETED")], [])
    watcher, _ = wait(job)
    assert watcher.positions == ["3", "1"]


def test_withheld_lines_are_announced_once_and_the_closing_line_names_the_setting():
    job = ScriptedJob([meta("RUNNING"), meta("COMPLETED")],
                      [LogChunk(["a", "b", "c"], 1, more=True), LogChunk(["d"], 2, more=True), LogChunk(["e"], 3)])
    watcher, messages = wait(job, max_log_lines=1)
    notices = [m for m in messages if "logged more than" in m]
    assert notices == ["Job job-1 logged more than max_log_lines=1 lines: the rest are not forwarded (their metrics "
                       "are still read); the wait ends with their count and where to read them."]
    assert watcher.lines_withheld == 4
    # No source of the whole log: the closing line ends at logs().
    assert messages[-1].endswith("raise it on wait_for_job or with PREFECT_BRAKET_MAX_LOG_LINES): read them with "
                                 "HybridJob.attach('local:job/job-1').logs().")


def test_metric_lines_take_the_log_timestamps_and_the_top_iteration_is_the_highest_seen():
    lines = [f"Metrics - iteration_number={i}; loss={i / 10};" for i in (0, 3, 1)]
    job = ScriptedJob([meta("COMPLETED")], [LogChunk(lines, timestamps=[100.0, 101.0, 102.0])])
    watcher, _ = wait(job)
    assert watcher.top_iteration == 3.0
    table = watcher.metrics_table()
    assert dict(zip(table["iteration_number"], table["timestamp"], strict=True)) == {0.0: 100.0, 3.0: 101.0, 1.0: 102.0}
