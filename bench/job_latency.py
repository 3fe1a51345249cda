"""Submit-to-COMPLETED time of a trivial job on the embedded engine, against a bare process.

    python bench/job_latency.py [runs]

The baseline is a bare `python -c pass` started the same way the engine starts a job (a new
session, waited for by polling). Runs alternate between the two so that machine noise hits
both alike; medians are reported, with the job's ratio to the baseline. Target: the job's
median under 1 s on a 2-core machine.
"""

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prefect_braket import LocalEngine, hybrid_job  # noqa: E402


def bare_process() -> float:
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-c", "pass"], start_new_session=True)
    while process.poll() is None:
        time.sleep(0.005)
    return time.perf_counter() - started


def trivial_job(engine: LocalEngine) -> float:
    job_function = hybrid_job(device="local:braket/braket_sv", backend=engine)(lambda: {"ok": True})
    started = time.perf_counter()
    job = job_function()
    while engine.get_job(job.arn)["status"] != "COMPLETED":
        time.sleep(0.005)
    elapsed = time.perf_counter() - started
    assert job.result() == {"ok": True}
    return elapsed


def main(runs: int = 15) -> None:
    with tempfile.TemporaryDirectory() as root:
        engine = LocalEngine(root)
        trivial_job(engine)  # warm the file cache
        bare, jobs = [], []
        for _ in range(runs):
            bare.append(bare_process())
            jobs.append(trivial_job(engine))
    figures = {
        "runs": runs,
        "bare_process_median_s": round(statistics.median(bare), 4),
        "job_submit_to_completed_median_s": round(statistics.median(jobs), 4),
        "job_p90_s": round(sorted(jobs)[int(0.9 * (runs - 1))], 4),
        "ratio_job_to_bare_process": round(statistics.median(jobs) / statistics.median(bare), 2),
        "target_job_median_under_1s": statistics.median(jobs) < 1.0,
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 15)
