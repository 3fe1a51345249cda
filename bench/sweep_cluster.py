"""A sweep on the local simulator: one process against a local Dask cluster of two worker processes.

    python bench/sweep_cluster.py [circuits] [repeats]

`circuits` (default 2,000) circuits of 16 to 20 qubits, as many of each size, every qubit rotated
(`ry(theta) q;`, so that the simulator leaves none out) and the first one's probabilities computed
exactly (shots=0), each with an angle of its own:
- one process: `BraketDevice.run_batch` in this process, the fastest way without a cluster;
- cluster: `run_quantum_sweep` in a flow on `DaskTaskRunner(address=...)`, in chunks of 100 (its
  default; a twentieth of a smaller sweep), on a `distributed.LocalCluster` of 2 worker processes
  of one thread each (the machine's 2 cores), timed inside the flow (the whole flow call apart);
- the machine's ceiling: 200 of the same circuits split between two plain processes (a
  multiprocessing pool: no Dask, no Prefect) against one process, the best a 2-process split
  can do here (20-qubit statevectors, 16 MiB each, share the memory bandwidth);
- per-chunk overhead: 20 chunks of one 1-qubit circuit (a few milliseconds of simulation) through
  `run_quantum_sweep` on the cluster and on Prefect's default task runner (threads of this
  process), against the same 20 circuits through `run_batch`: what a chunk costs besides its circuits.

Each pair runs `repeats` times (default 2: one process first, then the cluster first, which
cancels a steady drift of the machine's speed; 10-12 minutes on 2 cores), with fresh angles
(nothing is answered from the cache) and results checked equal. Medians are reported, with the
ratio to the one-process run, and the cores each run got (CPU seconds over wall seconds; for the
cluster, of this process, the server and the workers apart): on a shared machine, what other
processes took shows there. The Prefect server is a temporary one of its own, in a fresh
`PREFECT_HOME`, unless `PREFECT_API_URL` is set; the workers report to it. Target: the cluster
at least 1.6 times as fast as one process on 2 cores.
"""

import json
import multiprocessing
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

if not os.environ.get("PREFECT_API_URL"):
    os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="bench-prefect-home-")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
if "PREFECT_RESULTS_LOCAL_STORAGE_PATH" not in os.environ:  # the workers, which import this file too, keep it
    os.environ["PREFECT_RESULTS_LOCAL_STORAGE_PATH"] = tempfile.mkdtemp(prefix="bench-results-")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import distributed  # noqa: E402
import numpy as np  # noqa: E402
from prefect import flow  # noqa: E402
from prefect.server.api.server import SubprocessASGIServer  # noqa: E402
from prefect.settings import PREFECT_API_URL, temporary_settings  # noqa: E402
from prefect_dask import DaskTaskRunner  # noqa: E402
from server_records import wait_for_task_runs  # noqa: E402

from prefect_braket import BraketDevice, run_quantum_sweep  # noqa: E402

QUBITS = (16, 17, 18, 19, 20)
CHUNK_SIZE = 100
TRIVIAL_CHUNKS = 20
CEILING_SAMPLE = 200
TARGET = 1.6


def circuit(qubits: int) -> str:
    return (f"OPENQASM 3.0;\ninput float theta;\nqubit[{qubits}] q;\nry(theta) q;\n"
            "#pragma braket result probability q[0]\n")


TRIVIAL = circuit(1)


def sweep_inputs(circuits: int, program=None) -> tuple[list[str], list[dict]]:
    """Programs of every size in turn (so every chunk has the same mix), each with an angle of its own."""
    base = random.uniform(0, 100)
    programs = [program or circuit(QUBITS[index % len(QUBITS)]) for index in range(circuits)]
    return programs, [{"theta": base + index / circuits} for index in range(circuits)]


def in_one_process(device: BraketDevice, programs: list[str], inputs: list[dict]) -> tuple[float, list]:
    started = time.perf_counter()
    results = device.run_batch(programs, shots=0, inputs=inputs)
    return time.perf_counter() - started, [r.values[0] for r in results]


def as_sweep(task_runner, device: BraketDevice, programs: list[str], inputs: list[dict],
             chunk_size: int) -> tuple[float, float, list]:
    """(seconds inside the flow, seconds of the whole flow call, values) of one sweep."""

    @flow(name="bench-sweep-cluster", task_runner=task_runner)
    def sweep() -> tuple[float, list]:
        started = time.perf_counter()
        results = run_quantum_sweep(device, programs, shots=0, inputs=inputs, chunk_size=chunk_size)
        return time.perf_counter() - started, [r.values[0] for r in results]

    started = time.perf_counter()
    state = sweep(return_state=True)
    wall = time.perf_counter() - started
    inside, values = state.result()
    wait_for_task_runs(state.state_details.flow_run_id, -(-len(programs) // chunk_size))
    return inside, wall, values


def run_share(programs: list[str], inputs: list[dict]) -> float:
    """Runs a share of the ceiling's circuits in a pool process; returns how long it took."""
    return in_one_process(BraketDevice(), programs, inputs)[0]


def ceiling(pool, device: BraketDevice) -> tuple[float, float]:
    """(one process, two plain processes) seconds for the same circuits."""
    programs, inputs = sweep_inputs(CEILING_SAMPLE)
    alone_s = in_one_process(device, programs, inputs)[0]
    started = time.perf_counter()
    pool.starmap(run_share, [(programs[0::2], inputs[0::2]), (programs[1::2], inputs[1::2])])
    return alone_s, time.perf_counter() - started


def warm_simulator() -> None:
    BraketDevice().run_batch([circuit(qubits) for qubits in QUBITS], shots=0, inputs={"theta": 0.1})


def warm(client: distributed.Client, device: BraketDevice, address: str) -> None:
    """Imports, simulator loads and first runs of every size, in every process, before anything is timed."""
    warm_simulator()
    client.run(warm_simulator)
    programs, inputs = sweep_inputs(4, TRIVIAL)
    as_sweep(DaskTaskRunner(address=address), device, programs, inputs, 1)
    as_sweep(None, device, programs, inputs, 1)


def cpu_seconds(pids: list[int]) -> float:
    """CPU time (user and system) these processes have used so far, from /proc."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime and stime, the stat file's 14th and 15th fields
    return total / os.sysconf("SC_CLK_TCK")


def cores_used(parts: dict[str, list[int]], before: dict[str, float], seconds: float) -> dict[str, float]:
    """The cores each part (its processes) used since `before`, CPU seconds over wall seconds."""
    return {part: (cpu_seconds(pids) - before[part]) / seconds for part, pids in parts.items()}


def alone(device: BraketDevice, programs: list[str], inputs: list[dict],
          parts: dict[str, list[int]]) -> tuple[float, dict[str, float], list]:
    """(seconds, cores used, values) of the sweep in this process."""
    before = {part: cpu_seconds(pids) for part, pids in parts.items()}
    seconds, values = in_one_process(device, programs, inputs)
    return seconds, cores_used(parts, before, seconds), values


def spread(address: str, device: BraketDevice, programs: list[str], inputs: list[dict], chunk_size: int,
           parts: dict[str, list[int]]) -> tuple[float, float, dict[str, float], list]:
    """(seconds inside the flow, seconds of the flow call, cores used, values) of the sweep on the cluster."""
    before = {part: cpu_seconds(pids) for part, pids in parts.items()}
    inside, whole, values = as_sweep(DaskTaskRunner(address=address), device, programs, inputs, chunk_size)
    return inside, whole, cores_used(parts, before, whole), values


def trivial_chunks(runner: str, address: str, device: BraketDevice, programs: list[str], inputs: list[dict]) -> float:
    """Seconds for the trivial circuits in one process, or as one chunk each on the cluster or in threads."""
    if runner == "one process":
        return in_one_process(device, programs, inputs)[0]
    return as_sweep(DaskTaskRunner(address=address) if runner == "dask" else None, device, programs, inputs, 1)[0]


def measure(circuits: int, repeats: int, cluster: distributed.LocalCluster, device: BraketDevice,
            server_pids: list[int], pool) -> dict:
    address = cluster.scheduler_address
    chunk_size = min(CHUNK_SIZE, max(1, circuits // 20))
    parts = {"flow_process": [os.getpid()], "server": server_pids,
             "workers": [worker.pid for worker in cluster.scheduler.workers.values()]}
    load_before = os.getloadavg()[0]
    one, inside, wall, one_cores, cluster_cores = [], [], [], [], []
    trivial: dict[str, list[float]] = {"one process": [], "dask": [], "threads": []}
    ceilings = []
    for repeat in range(repeats):
        programs, inputs = sweep_inputs(circuits)
        # Alternating order, so that the machine's drift hits both alike.
        if repeat % 2 == 0:
            here = alone(device, programs, inputs, parts)
            there = spread(address, device, programs, inputs, chunk_size, parts)
        else:
            there = spread(address, device, programs, inputs, chunk_size, parts)
            here = alone(device, programs, inputs, parts)
        assert np.allclose(here[-1], there[-1], rtol=0, atol=1e-12), "the cluster's values differ from one process's"
        one.append(here[0])
        one_cores.append(here[1])
        inside.append(there[0])
        wall.append(there[1])
        cluster_cores.append(there[2])

        alone_s, split_s = ceiling(pool, device)
        ceilings.append(alone_s / split_s)

        programs, inputs = sweep_inputs(TRIVIAL_CHUNKS, TRIVIAL)
        for runner in list(trivial)[::1 if repeat % 2 == 0 else -1]:
            trivial[runner].append(trivial_chunks(runner, address, device, programs, inputs))
    median = statistics.median
    ratio = median(one) / median(inside)
    return {
        "circuits": circuits,
        "qubits": f"{QUBITS[0]}-{QUBITS[-1]}",
        "chunk_size": chunk_size,
        "workers": len(cluster.scheduler.workers),
        "cores": os.cpu_count(),
        "load_average_before_after": [round(load_before, 1), round(os.getloadavg()[0], 1)],
        "repeats": repeats,
        "one_process_median_s": round(median(one), 2),
        "cluster_sweep_median_s": round(median(inside), 2),
        "cluster_flow_call_median_s": round(median(wall), 2),
        "speedup_cluster_vs_one_process": round(ratio, 2),
        "speedups_per_repeat": [round(a / b, 2) for a, b in zip(one, inside, strict=True)],
        "target_speedup_1_6_met": ratio >= TARGET,
        "ceiling_speedup_two_plain_processes": round(median(ceilings), 2),
        "cores_used_one_process_median": round(median(sum(used.values()) for used in one_cores), 2),
        "cores_used_cluster_median": {part: round(median(used[part] for used in cluster_cores), 2) for part in parts},
        "trivial_chunks": TRIVIAL_CHUNKS,
        "trivial_circuits_one_process_s": round(median(trivial["one process"]), 3),
        **{f"per_chunk_overhead_{runner}_ms": round(
            (median(trivial[runner]) - median(trivial["one process"])) / TRIVIAL_CHUNKS * 1000, 1)
           for runner in ("dask", "threads")},
    }


def main(circuits: int, repeats: int) -> None:
    server = None
    if not os.environ.get("PREFECT_API_URL"):
        server = SubprocessASGIServer()
        server.start()
        os.environ["PREFECT_API_URL"] = server.api_url  # for the workers, which start after this
    try:
        with temporary_settings({PREFECT_API_URL: os.environ["PREFECT_API_URL"]}):
            with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                          dashboard_address=None) as cluster:
                with distributed.Client(cluster, set_as_default=False) as client, \
                        multiprocessing.get_context("spawn").Pool(2, initializer=warm_simulator) as pool:
                    device = BraketDevice()
                    warm(client, device, cluster.scheduler_address)
                    figures = measure(circuits, repeats, cluster, device,
                                      [server.server_process.pid] if server and server.server_process else [], pool)
    finally:
        if server is not None:
            server.stop()
    print(json.dumps(figures))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000, int(sys.argv[2]) if len(sys.argv) > 2 else 2)
