"""Quantum tasks on the local simulator: Prefect task runs against direct calls, batch against loop.

    python bench/quantum_tasks.py [circuits]

Measured in one process and one run, inside one flow, so the flow's own start and end are not
counted: (1) `circuits` small circuits as `run_quantum_task` task runs (cached results persisted,
as by default) against the same circuits through `BraketDevice.run` and against bare simulator
calls (each building its program from the source and the angle, as the others do); (2) 100
circuits as one `run_quantum_batch` task run against 100 `run_quantum_task` task runs: what a
batch saves in Prefect. (On a local simulator a batch's circuits run one after another, as they
would in a loop; `bench/endpoint_latency.py` measures batches where Braket's API is in the way,
and `bench/sweep_cluster.py` batches spread over processes.) Each case is timed `repeats` times,
the cases in a different order each time (rotated), so that a drift of the machine's speed does
not land on one case; medians are reported, with ratios.
"""

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import os  # noqa: E402

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
os.environ["PREFECT_RESULTS_LOCAL_STORAGE_PATH"] = tempfile.mkdtemp(prefix="bench-results-")

from prefect import flow  # noqa: E402

from prefect_braket import BraketDevice, run_quantum_batch, run_quantum_task  # noqa: E402
from prefect_braket.quantum.programs import to_program  # noqa: E402
from prefect_braket.quantum.simulators import LocalSimulator  # noqa: E402

PROGRAM = """OPENQASM 3.0;
input float theta;
qubit[2] q;
rx(theta) q[0];
cnot q[0], q[1];
#pragma braket result expectation z(q[0])
"""


def timed(function) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


@flow(name="bench-quantum-tasks")
def bench(circuits: int, repeats: int) -> dict:
    device = BraketDevice()
    device.run(PROGRAM, shots=100, inputs={"theta": 0.0})  # load the simulator once
    offset = iter(range(10**6))

    def thetas(n):  # fresh angles each time, so no cached result is reused
        base = next(offset)
        return [base + i / (n + 1) for i in range(n)]

    arn = device.device_arn
    cases = {
        "bare": lambda: [LocalSimulator.run(arn, to_program(PROGRAM, {"theta": t}), 100) for t in thetas(circuits)],
        "direct": lambda: [device.run(PROGRAM, shots=100, inputs={"theta": t}) for t in thetas(circuits)],
        "wrapped": lambda: [run_quantum_task(device, PROGRAM, shots=100, inputs={"theta": t})
                            for t in thetas(circuits)],
        "task_runs_100": lambda: [run_quantum_task(device, PROGRAM, shots=100, inputs={"theta": t})
                                  for t in thetas(100)],
        "batch_task_run_100": lambda: run_quantum_batch(device, [PROGRAM] * 100, shots=100,
                                                        inputs=[{"theta": t} for t in thetas(100)]),
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    names = list(cases)
    for repeat in range(repeats):
        for name in names[repeat % len(names):] + names[:repeat % len(names)]:
            times[name].append(timed(cases[name]))
    bare, direct, wrapped = times["bare"], times["direct"], times["wrapped"]
    task_runs, batched = times["task_runs_100"], times["batch_task_run_100"]
    median = statistics.median
    return {
        "circuits": circuits,
        "repeats": repeats,
        "bare_simulator_s": round(median(bare), 3),
        "device_run_s": round(median(direct), 3),
        "prefect_task_runs_s": round(median(wrapped), 3),
        "per_task_overhead_ms": round((median(wrapped) - median(direct)) / circuits * 1000, 2),
        "ratio_task_runs_to_device_run": round(median(wrapped) / median(direct), 2),
        "ratio_device_run_to_bare_simulator": round(median(direct) / median(bare), 2),
        "task_runs_100_s": round(median(task_runs), 3),
        "batch_task_run_100_s": round(median(batched), 3),
        "ratio_batch_task_run_to_task_runs": round(median(batched) / median(task_runs), 2),
    }


if __name__ == "__main__":
    circuits = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    print(json.dumps(bench(circuits, repeats=5)))
