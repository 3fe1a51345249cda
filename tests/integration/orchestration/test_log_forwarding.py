"""Log forwarding while a flow waits for a job: what reaches the flow run's logs, read back from
the Prefect API, and how the job's log is read (bounded chunks) and its metrics published."""

import json

import pytest
from prefect import flow

from helpers.aws import GET_JOB_PARAMS, JOB_ARN, get_job_answer, own_account, recent_ms
from helpers.runs import flow_run_log_records, latest_artifacts
from helpers.waiting import wait_for
from prefect_braket import hybrid_job, wait_for_job
from prefect_braket.backends.base import LOG_CHUNK_BYTES
from prefect_braket.jobs import log_metric
from prefect_braket.orchestration.context import artifact_key
from prefect_braket.orchestration.watcher import (
    LOG_RECORD_MAX_CHARS,
    LOG_RECORD_MAX_LINES,
    METRICS_TABLE_MAX_ROWS,
    max_log_lines_setting,
)

QPU = "arn:aws:braket:us-east-1::device/qpu/ionq/Forte-1"


@hybrid_job(device="local:braket/braket_sv")
def chatty(lines: int = 1000, metrics: int = 0, width: int = 0):
    for i in range(lines):
        print(f"line {i} of the job" + "." * width)
    for i in range(metrics):
        log_metric(metric_name="loss", value=1.0 / (i + 1), iteration_number=i)
    print("the job's last line")
    return {"lines": lines}


@hybrid_job(device=QPU, backend="local")
def holds_qpu(seconds: float = 1.0):
    import time

    time.sleep(seconds)
    print("done with the QPU")


def flow_run_logs(flow_run_id) -> list[str]:
    """Every log message of a flow run (its task runs' included), oldest first."""
    return [log.message for log in flow_run_log_records(flow_run_id)]


def job_records(messages: list[str], job_name: str) -> list[list[str]]:
    """The forwarded records of a job's log, each as its lines without the `[job-name] ` prefix."""
    prefix = f"[{job_name}] "
    return [[line[len(prefix):] for line in m.split("\n")] for m in messages if m.startswith(prefix)]


def test_job_lines_reach_the_flow_run_logs_many_to_a_record(engine):
    @flow
    def experiment():
        job = chatty(1000)
        return job, job.result()

    state = experiment(return_state=True)
    job, result = state.result()
    assert result == {"lines": 1000}
    messages = flow_run_logs(state.state_details.flow_run_id)
    records = job_records(messages, job.name)
    forwarded = [line for record in records for line in record]
    assert forwarded == job.log_lines()  # every line, in order, nothing else mixed in
    assert "line 0 of the job" in forwarded and "the job's last line" in forwarded
    assert len(records) <= 1001 // LOG_RECORD_MAX_LINES + 2  # batched, not one record per line
    assert all(len(r) <= LOG_RECORD_MAX_LINES for r in records)
    assert all(len(m) <= LOG_RECORD_MAX_CHARS for m in messages if m.startswith(f"[{job.name}] "))
    assert not any("not forwarded" in m for m in messages)
    # The job's end is logged after its last line.
    last_line = max(i for i, m in enumerate(messages) if m.startswith(f"[{job.name}] "))
    assert any(f"Job {job.name} is COMPLETED" in m for m in messages[last_line:])


def test_the_cap_withholds_lines_with_one_closing_line_and_metrics_stay_complete(engine):
    # About 2.5 MB of log: the engine hands it over in several chunks, all drained after the job ends.
    lines, metrics, cap = 40_000, 600, 250

    @flow
    def experiment():
        job = chatty(lines, metrics, width=40)
        return job, wait_for_job(job, poll_interval_seconds=0.2, max_log_lines=cap)

    state = experiment(return_state=True)
    job, meta = state.result()
    assert meta["status"] == "COMPLETED"
    total = len(job.log_lines())
    assert total >= lines + metrics + 1
    messages = flow_run_logs(state.state_details.flow_run_id)
    forwarded = [line for record in job_records(messages, job.name) for line in record]
    assert forwarded == job.log_lines()[:cap]
    closing = [m for m in messages if "not forwarded (max_log_lines" in m]
    assert len(closing) == 1
    assert closing[0].startswith(f"{total - cap:,} more lines of job {job.name}'s log")
    assert f"HybridJob.attach('{job.arn}').logs()" in closing[0]
    assert str(engine.job_directory(job.arn) / "log.txt") in closing[0]
    assert messages.index(closing[0]) > max(i for i, m in enumerate(messages) if m.startswith(f"[{job.name}] "))
    # Every metric line came after the cap, and every one was read.
    artifacts = latest_artifacts(state.state_details.flow_run_id)
    table = json.loads(artifacts[f"{artifact_key(job.name)}-metrics"].data)
    assert table["iteration_number"] == [float(i) for i in range(metrics)]
    assert table["loss"][-1] == pytest.approx(1.0 / metrics)
    assert artifacts[f"{artifact_key(job.name)}-progress"].data == 100.0
    summary = artifacts[f"{artifact_key(job.name)}-summary"].data
    assert f"| metric lines | {metrics} |" in summary
    assert f"| log lines forwarded | {cap} of {total:,} (max_log_lines) |" in summary


def test_the_cap_comes_from_the_environment_for_job_result(engine, monkeypatch):
    monkeypatch.setenv("PREFECT_BRAKET_MAX_LOG_LINES", "5")

    @flow
    def experiment():
        job = chatty(20)
        return job, job.result()

    state = experiment(return_state=True)
    job, _ = state.result()
    messages = flow_run_logs(state.state_details.flow_run_id)
    assert [line for record in job_records(messages, job.name) for line in record] == job.log_lines()[:5]
    closing = [m for m in messages if "not forwarded (max_log_lines=5" in m]
    assert len(closing) == 1 and closing[0].startswith(f"{len(job.log_lines()) - 5} more lines")


def test_max_log_lines_setting_names_the_bad_value():
    assert max_log_lines_setting() == 10_000
    assert max_log_lines_setting(0) == 0
    with pytest.raises(ValueError, match=r"max_log_lines=-1 is negative"):
        max_log_lines_setting(-1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PREFECT_BRAKET_MAX_LOG_LINES", "25")
        assert max_log_lines_setting() == 25
        assert max_log_lines_setting(7) == 7  # the keyword wins
        patch.setenv("PREFECT_BRAKET_MAX_LOG_LINES", "lots")
        with pytest.raises(ValueError, match=r"PREFECT_BRAKET_MAX_LOG_LINES='lots' is not a whole number"):
            max_log_lines_setting()


def test_events_and_queue_position_changes_are_logged(engine):
    @flow
    def experiment():
        first = holds_qpu(2.0)
        wait_for(lambda: first.state() == "RUNNING")
        second = holds_qpu(0.1)
        wait_for_job(second, poll_interval_seconds=0.1)
        wait_for_job(first, poll_interval_seconds=0.1)
        return first, second

    state = experiment(return_state=True)
    first, second = state.result()
    messages = flow_run_logs(state.state_details.flow_run_id)
    ours = [m for m in messages if m.startswith(f"Job {second.name} ")]
    assert f"Job {second.name} is queued at position 1" in ours
    assert any(m.startswith(f"Job {second.name} event WAITING_FOR_PRIORITY") for m in ours)
    order = [f"Job {second.name} is queued at position 1", f"Job {second.name} is QUEUED",
             f"Job {second.name} is RUNNING", f"Job {second.name} event COMPLETED", f"Job {second.name} is COMPLETED"]
    assert [m for m in ours if any(m.startswith(o) for o in order)] == [
        m for o in order for m in ours if m.startswith(o)]  # each once, in this order
    assert ["done with the QPU"] in job_records(messages, second.name)
    assert first.metadata()["endedAt"] <= second.metadata()["startedAt"]


def test_metrics_table_artifact_is_sampled_and_says_so(engine):
    metrics = 2_500

    @flow
    def experiment():
        job = chatty(0, metrics)
        return job, job.result()

    state = experiment(return_state=True)
    job, _ = state.result()
    artifact = latest_artifacts(state.state_details.flow_run_id)[f"{artifact_key(job.name)}-metrics"]
    table = json.loads(artifact.data)
    iterations = table["iteration_number"]
    assert len(iterations) == METRICS_TABLE_MAX_ROWS and len(table["loss"]) == METRICS_TABLE_MAX_ROWS
    assert iterations[0] == 0.0 and iterations[-1] == float(metrics - 1)
    assert iterations == sorted(set(iterations))
    gaps = {b - a for a, b in zip(iterations, iterations[1:], strict=False)}
    assert gaps <= {2.0, 3.0}  # evenly spaced: 2,500 rows in 1,000
    assert f"1,000 of its {metrics:,} rows" in artifact.description
    assert "HybridJob.metrics()" in artifact.description
    assert len(job.metrics("iteration_number")["iteration_number"]) == metrics


def test_engine_reads_a_large_log_in_bounded_chunks(engine):
    job = chatty(30_000, width=60)  # about 2.4 MB
    job.wait_until_complete(timeout_seconds=60, poll_interval_seconds=0.1)
    with open(engine.job_directory(job.arn) / "log.txt", "ab") as log:
        log.write(b"y" * (LOG_CHUNK_BYTES + 10) + b"\n")  # one line longer than a chunk
    chunks, cursor = [], None
    while True:
        chunk = engine.read_log(job.arn, cursor)
        chunks.append(chunk)
        if not chunk.more:
            break
        assert chunk.cursor > (cursor or 0)
        cursor = chunk.cursor
    assert len(chunks) >= 4
    assert all(sum(len(line) + 1 for line in c.lines) <= LOG_CHUNK_BYTES + 1 for c in chunks)
    assert chunks[0].source == str(engine.job_directory(job.arn) / "log.txt")
    lines = [line for c in chunks for line in c.lines]
    assert lines[0] == "line 0 of the job" + "." * 60
    assert "line 29999 of the job" + "." * 60 in lines and "the job's last line" in lines
    assert sum(len(line) for line in lines if line.startswith("y")) == LOG_CHUNK_BYTES + 10  # in pieces, whole
    assert job.logs().split("\n") == lines


def test_aws_backend_reads_cloudwatch_in_bounded_chunks(aws, aws_session):
    backend, stubber, _ = aws
    own_account(aws_session)  # a log group of its own, whatever other tests of the session wrote
    stubber.add_response("get_job", get_job_answer("RUNNING"), GET_JOB_PARAMS)
    logs = backend.client("logs")
    logs.create_log_group(logGroupName="/aws/braket/jobs")
    stream = f"train-example/{JOB_ARN.rsplit('/', 1)[1]}/algo-1-1700000001"
    logs.create_log_stream(logGroupName="/aws/braket/jobs", logStreamName=stream)
    start = recent_ms()
    body = "x" * 84  # 10,000 events (a page) stay under CloudWatch's 1 MB a page, as moto does not check
    for first in range(0, 30_000, 5_000):  # 2.7 MB
        logs.put_log_events(logGroupName="/aws/braket/jobs", logStreamName=stream, logEvents=[
            {"timestamp": start + i, "message": f"{i:05d} {body}"} for i in range(first, first + 5_000)])
    chunks, cursor = [], None
    while True:
        chunk = backend.read_log(JOB_ARN, cursor)
        chunks.append(chunk)
        cursor = chunk.cursor
        if not chunk.more:
            break
    assert len(chunks) >= 2
    assert all(sum(len(line) for line in c.lines) <= 2 * LOG_CHUNK_BYTES for c in chunks)  # a page finishes a chunk
    lines = [line for c in chunks for line in c.lines if line.endswith(body)]
    assert [int(line.split()[0]) for line in lines] == list(range(30_000))
    assert "CloudWatch Logs group /aws/braket/jobs" in chunks[0].source and "us-east-1" in chunks[0].source
