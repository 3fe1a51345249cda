"""A chatty job's waiting flow against the job itself, and how fast such a flow stops on SIGINT.

    python bench/log_forwarding.py [repeats] [lines]

A job prints `lines` lines (default 1,000,000, about 40 MB, one `print` each) and a flow waits
for it with `job.result()` (`wait_for_job` with its defaults: at most 10,000 lines forwarded, 200
to a Prefect log record; the rest counted, their metrics read). Figures, medians over `repeats`:

- `job_s`: the job's own run time, from its metadata (`startedAt` to `endedAt`);
- `flow_s`: the waiting flow's wall time, submission to result;
- `ratio_flow_to_job` (each flow against its own job, then the median) and `lines_read_per_s`
  (lines the wait read, parsed and counted per second of flow); target: `flow_s` at most
  `2 * job_s + 10`;
- a baseline in the same run: a quiet job (no lines) waited for the same way, which is what a
  flow around a job costs whatever it prints, and the chatty flow's time above that baseline;
- `forward_all`: once, the same job with `max_log_lines` above its line count, so that every line
  goes to the API, and the lines forwarded per second (batched records);
- `sigint_exit_s`: a flow waiting for a job that printed `lines` lines and then sleeps runs in a
  process of its own; once the job has printed half of them, SIGINT goes to that process, and
  this is how long the process takes to exit (its wait cancels the job first). Target: 5 s.

The bench runs on a Prefect server of its own (a temporary one, in a fresh `PREFECT_HOME`, unless
`PREFECT_API_URL` is set), shared with the SIGINT processes, and on an engine home of its own.
"""

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

if not os.environ.get("PREFECT_API_URL"):
    os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="bench-prefect-home-")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
os.environ.setdefault("PREFECT_RESULTS_LOCAL_STORAGE_PATH", tempfile.mkdtemp(prefix="bench-results-"))
os.environ.setdefault("PREFECT_BRAKET_HOME", tempfile.mkdtemp(prefix="bench-braket-home-"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prefect import flow  # noqa: E402

from prefect_braket import HybridJob, get_job_result, hybrid_job, wait_for_job  # noqa: E402

LINES = 1_000_000
TARGET_SIGINT_S = 5.0


@hybrid_job(device="local:braket/braket_sv")
def chatty(lines: int, sleep_after: float = 0.0):
    import time

    for i in range(lines):
        print(f"step {i:>7} of {lines}: loss not yet computed, nothing to see")
    time.sleep(sleep_after)
    return {"lines": lines}


@flow
def wait_for_chatty(lines: int, sleep_after: float = 0.0, max_log_lines: int | None = None) -> tuple[HybridJob, dict]:
    job = chatty(lines, sleep_after)
    wait_for_job(job, max_log_lines=max_log_lines)  # what `job.result()` does in a flow, with the cap given
    return job, get_job_result(job)


def job_seconds(job: HybridJob) -> float:
    meta = job.metadata()
    started, ended = (datetime.fromisoformat(str(meta[k])) for k in ("startedAt", "endedAt"))
    return (ended - started).total_seconds()


def timed(lines: int, max_log_lines: int | None = None) -> tuple[float, float]:
    started = time.perf_counter()
    job, result = wait_for_chatty(lines, max_log_lines=max_log_lines)
    elapsed = time.perf_counter() - started
    assert result == {"lines": lines}, result
    return elapsed, job_seconds(job)


def sigint_exit_seconds(lines: int) -> tuple[float, str]:
    """Seconds from SIGINT to the exit of a process whose flow waits for a chatty job, and the job's
    status after (the wait cancels it)."""
    arn_file = Path(tempfile.mkdtemp(prefix="bench-sigint-")) / "arn"
    child = subprocess.Popen([sys.executable, __file__, "--sigint-child", str(lines), str(arn_file)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not arn_file.exists() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        job = HybridJob.attach(arn_file.read_text())
        log = job.backend.job_directory(job.arn) / "log.txt"
        size = len(f"step {0:>7} of {lines}: loss not yet computed, nothing to see\n") * lines
        while log.stat().st_size < size / 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        sent = time.perf_counter()
        child.send_signal(signal.SIGINT)
        child.wait(timeout=120)
        elapsed = time.perf_counter() - sent
        job.wait_until_complete(timeout_seconds=30, poll_interval_seconds=0.1)
        return elapsed, job.state()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def sigint_child(lines: int, arn_file: Path) -> None:
    @flow
    def waits_for_a_sleeping_job() -> None:
        job = chatty(lines, sleep_after=300)
        arn_file.write_text(job.arn)
        job.result()

    waits_for_a_sleeping_job()


def main(repeats: int = 3, lines: int = LINES) -> None:
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL, temporary_settings

    if not os.environ.get("PREFECT_API_URL"):
        # Started here rather than on the first flow, so that the SIGINT processes share it.
        server = SubprocessASGIServer()
        server.start(timeout=180)
        os.environ["PREFECT_API_URL"] = server.api_url
    with temporary_settings({PREFECT_API_URL: os.environ["PREFECT_API_URL"]}):
        timed(0)  # warm up: imports, the engine's first job, the server's first flow run
        quiet, chatty_runs = [], []
        for _ in range(repeats):
            quiet.append(timed(0))
            chatty_runs.append(timed(lines))
        forward_all_s, forward_all_job_s = timed(lines // 10, max_log_lines=lines)
        sigint = [sigint_exit_seconds(lines) for _ in range(repeats)]
    flow_s = statistics.median(f for f, _ in chatty_runs)
    job_s = statistics.median(j for _, j in chatty_runs)
    quiet_flow_s = statistics.median(f for f, _ in quiet)
    sigint_s = statistics.median(s for s, _ in sigint)
    figures = {
        "lines": lines, "repeats": repeats,
        "job_s": round(job_s, 2), "flow_s": round(flow_s, 2),
        "ratio_flow_to_job": round(statistics.median(f / j for f, j in chatty_runs), 2),
        "lines_read_per_s": round(lines / flow_s),
        "target_flow_at_most_2x_job_plus_10s": flow_s <= 2 * job_s + 10,
        "baseline_quiet_job_s": round(statistics.median(j for _, j in quiet), 2),
        "baseline_quiet_flow_s": round(quiet_flow_s, 2),
        "chatty_flow_minus_quiet_flow_s": round(flow_s - quiet_flow_s, 2),
        "forward_all": {
            "lines": lines // 10, "job_s": round(forward_all_job_s, 2), "flow_s": round(forward_all_s, 2),
            "lines_forwarded_per_s": round(lines // 10 / forward_all_s),
        },
        "sigint_exit_s": round(sigint_s, 2), "sigint_runs_s": [round(s, 2) for s, _ in sigint],
        "sigint_job_states": [state for _, state in sigint],
        "target_sigint_exit_at_most_5s": sigint_s <= TARGET_SIGINT_S,
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--sigint-child"]:
        sigint_child(int(sys.argv[2]), Path(sys.argv[3]))
    else:
        main(*(int(a) for a in sys.argv[1:3]))
