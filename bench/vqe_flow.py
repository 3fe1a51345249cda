"""The VQE flow's wall time against a plain Python loop doing the same circuit evaluations, and
its memory over a long run.

    python bench/vqe_flow.py [repeats] [memory_iterations]      # defaults: 5, 1000 (0: no memory run)

Both run H2's VQE (flows/vqe_h2.py) for the same iterations (tolerance 0) on the same local
simulator in the same process: the flow with its task runs, a checkpoint every iteration and its
artifacts, the loop with nothing but the evaluations and the optimiser. Sizes: exact simulation
(shots=0, iterations of a few milliseconds), 1000 and 4000 shots per circuit, over 60 iterations
each; and the 17 exact iterations in which `vqe_h2` converges, where a flow run's fixed cost (its
creation, its end, the server's records of it) weighs most. Targets: the flow at most 1.15 times
the loop exact, 1.10 times at 1000 shots, 1.05 times at 4000 (the 17-iteration case has none:
`empty_flow_ms` shows what any flow run costs).

Method, for figures that mean something on a small, noisy machine:
- a Prefect server of its own (a temporary one, in a fresh `PREFECT_HOME`, unless `PREFECT_API_URL`
  is set), so that neither the size of an old database nor the bench's runs in it count;
- a flow run's time is from its call until the server holds its task runs as finished: the server
  records them from events after the flow has returned, on the same cores, and that work is part
  of what the run costs (otherwise it would land on whatever is measured next); the bench asks
  for them every 20 ms with a client of its own opened before the first measurement;
- each flow run is paired with a loop run next to it, the flow first in every other pair and the
  sizes in alternating order, as the machine's speed drifts within seconds; per size, the median
  of the pairs' ratios is the figure printed, and the verdict is that figure against the target;
- the machine's speed drifts by 10-20% between runs of the same circuits seconds apart (a plain
  loop repeated 12 times varied by 8%, in wall and CPU time alike), so the flow's extra time is
  also split, with each run's circuit evaluations (`ParametricCost.evaluate`, the same work in
  both) timed in wall time and in the main thread's CPU time: `outside_circuits_ms` is what the
  flow adds outside them, split into before the first (the flow run's start, the first task
  run's), after the last (the last task run's end, the table, summary and progress, the flow
  run's end, the server's records) and between iterations (the other task runs' ends and
  starts, checkpoints handed over); `circuit_wait_per_iteration_ms` is how much longer they
  waited for the GIL or a core than in the loop, `circuit_cpu_ratio` how much more CPU they
  took; and `ratio_at_equal_circuit_cpu` compares each run's wall time per second of circuit CPU, which
  cancels the drift and keeps the first two, leaving out the third;
- a control in the same run: each pair's loop is run once more, next to it on the side away from
  the flow, and `loop_to_loop_ratios` are the second loop's times over the first's: identical
  work, so their spread is what the machine alone does to a ratio of two runs;
- memory: a run of `memory_iterations` exact iterations in a process of its own, its resident
  memory read every 0.2 s from /proc against the iterations its checkpoint holds: after its first
  tenth, in its last tenth, the growth between, and the peak (target: the peak under 400 MB).
"""

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

if not os.environ.get("PREFECT_API_URL"):
    os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="bench-prefect-home-")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
os.environ["PREFECT_RESULTS_LOCAL_STORAGE_PATH"] = tempfile.mkdtemp(prefix="bench-results-")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "flows"))

import numpy as np  # noqa: E402
from prefect import flow  # noqa: E402
from prefect.server.api.server import SubprocessASGIServer  # noqa: E402
from prefect.settings import PREFECT_API_URL, temporary_settings  # noqa: E402
from server_records import wait_for_task_runs  # noqa: E402
from vqe_h2 import ANSATZ, H2_HAMILTONIAN, vqe_h2  # noqa: E402

from prefect_braket import BraketDevice  # noqa: E402
from prefect_braket.variational import GradientDescent, ParametricCost  # noqa: E402
from prefect_braket.variational.loop import LoopState, optimize  # noqa: E402

SIZES = {"exact": (0, 60), "shots_1000": (1000, 60), "shots_4000": (4000, 60), "exact_17_iterations": (0, 17)}
TARGETS = {"exact": 1.15, "shots_1000": 1.10, "shots_4000": 1.05}
MEMORY_TARGET_MB = 400
CIRCUITS: list[tuple[float, float, float]] = []  # each evaluation's start, end and CPU time, in the run measured


def _timed_evaluate(evaluate):
    def timed(*args, **kwargs):
        started, cpu = time.perf_counter(), time.thread_time()
        try:
            return evaluate(*args, **kwargs)
        finally:
            CIRCUITS.append((started, time.perf_counter(), time.thread_time() - cpu))
    return timed


ParametricCost.evaluate = _timed_evaluate(ParametricCost.evaluate)  # type: ignore[method-assign]


@flow
def warm_up() -> None:
    BraketDevice().run("OPENQASM 3.0;\nqubit[1] q;\nh q[0];\n#pragma braket result probability\n", shots=0)


@flow
async def empty_flow() -> None:
    return None


@dataclass
class Run:
    """One measured run: its wall time, its circuit evaluations' wall and CPU time, the time before
    the first of them, after the last and between them, and what it found."""

    seconds: float
    circuit_seconds: float
    circuit_cpu_seconds: float
    before_circuits: float
    after_circuits: float
    result: dict

    @property
    def between_circuits(self) -> float:
        return self.seconds - self.circuit_seconds - self.before_circuits - self.after_circuits

    def seconds_per_circuit_cpu_second(self) -> float:
        return self.seconds / self.circuit_cpu_seconds

    @classmethod
    def timed(cls, run, shots: int, iterations: int) -> "Run":
        CIRCUITS.clear()
        started = time.perf_counter()
        result = run(shots, iterations)
        ended = time.perf_counter()
        return cls(ended - started, sum(end - start for start, end, _ in CIRCUITS), sum(c for _, _, c in CIRCUITS),
                   CIRCUITS[0][0] - started, ended - CIRCUITS[-1][1], result)


def plain_loop(shots: int, iterations: int) -> dict:
    device = BraketDevice()
    cost = ParametricCost(ANSATZ, H2_HAMILTONIAN, ["theta"])
    state = LoopState(np.array([0.0]))
    optimize(state, GradientDescent(0.4), iterations, 0.0,
             lambda _, points: cost.evaluate(device, points, shots), lambda *_: None)
    return {"energy": state.history[-1].energy, "iterations": len(state.history)}


def vqe_flow(shots: int, iterations: int) -> dict:
    """The flow, until the server holds its task runs as finished."""
    # A new experiment id each time: a repeated one would be answered from the cache.
    state = asyncio.run(vqe_h2(experiment_id=f"bench-vqe-{uuid.uuid4().hex[:12]}",
                               checkpoint_location=tempfile.mkdtemp(),
                               max_iterations=iterations, tolerance=0.0, shots=shots, return_state=True))
    result = state.result()
    wait_for_task_runs(state.state_details.flow_run_id, result["task_runs"])
    return result


def measure(repeats: int) -> dict:
    pairs: dict[str, list[tuple[Run, Run]]] = {name: [] for name in SIZES}  # (flow's, loop's)
    controls: dict[str, list[float]] = {name: [] for name in SIZES}  # a second loop's time over the pair's loop's
    for repeat in range(repeats):
        for name in (list(SIZES) if repeat % 2 == 0 else list(reversed(SIZES))):
            shots, iterations = SIZES[name]
            if repeat % 2 == 0:
                flow_run, loop_run = Run.timed(vqe_flow, shots, iterations), Run.timed(plain_loop, shots, iterations)
                control = Run.timed(plain_loop, shots, iterations)
            else:
                control = Run.timed(plain_loop, shots, iterations)
                loop_run, flow_run = Run.timed(plain_loop, shots, iterations), Run.timed(vqe_flow, shots, iterations)
            result, loop_result = flow_run.result, loop_run.result
            assert result["iterations"] == result["evaluated_iterations"] == loop_result["iterations"] == iterations
            assert shots or abs(result["energy"] - loop_result["energy"]) < 1e-9  # exact runs agree to the last digit
            pairs[name].append((flow_run, loop_run))
            controls[name].append(control.seconds / loop_run.seconds)
    return {name: {**summary(name, pairs[name]), "loop_to_loop_median": round(statistics.median(controls[name]), 3),
                   "loop_to_loop_ratios": [round(r, 2) for r in controls[name]]} for name in SIZES}


def summary(name: str, pairs: list[tuple[Run, Run]]) -> dict:
    """One size's figures: medians over its (flow, loop) pairs."""
    shots, iterations = SIZES[name]

    def median(of) -> float:
        return statistics.median(of(flow_run, loop_run) for flow_run, loop_run in pairs)

    def per_iteration_ms(of) -> float:
        return round(median(of) / iterations * 1000, 1)

    def ms(of) -> float:
        return round(median(of) * 1000)

    ratios = [f.seconds / lo.seconds for f, lo in pairs]
    figures = {
        "shots": shots, "iterations": iterations,
        "plain_loop_median_s": round(median(lambda _, lo: lo.seconds), 3),
        "flow_median_s": round(median(lambda f, _: f.seconds), 3),
        "task_runs_median": median(lambda f, _: f.result["task_runs"]),
        "outside_circuits_ms": ms(lambda f, lo: (f.seconds - f.circuit_seconds) - (lo.seconds - lo.circuit_seconds)),
        "of_which_before_the_first_ms": ms(lambda f, lo: f.before_circuits - lo.before_circuits),
        "of_which_after_the_last_ms": ms(lambda f, lo: f.after_circuits - lo.after_circuits),
        "of_which_between_iterations_ms": ms(lambda f, lo: f.between_circuits - lo.between_circuits),
        "circuit_wait_per_iteration_ms": per_iteration_ms(
            lambda f, lo: (f.circuit_seconds - f.circuit_cpu_seconds)
            - (lo.circuit_seconds - lo.circuit_cpu_seconds)),
        "circuit_cpu_ratio": round(median(lambda f, lo: f.circuit_cpu_seconds / lo.circuit_cpu_seconds), 3),
        "ratio_at_equal_circuit_cpu": round(
            median(lambda f, lo: f.seconds_per_circuit_cpu_second() / lo.seconds_per_circuit_cpu_second()), 3),
        "ratio_flow_to_loop": round(statistics.median(ratios), 3),
        "pair_ratios": [round(ratio, 2) for ratio in ratios],
    }
    if name in TARGETS:
        figures["target"] = TARGETS[name]
        figures["meets_target"] = figures["ratio_flow_to_loop"] <= TARGETS[name]
    return figures


def empty_flow_ms(repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        asyncio.run(empty_flow())
        times.append(time.perf_counter() - started)
    return round(statistics.median(times) * 1000)


def resident_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def iterations_done(location: Path) -> int:
    """How many iterations the run's checkpoint holds (0 before its first)."""
    try:
        return len(json.loads(next(location.glob("*.json")).read_text())["dataDictionary"]["history"])
    except (StopIteration, ValueError, KeyError):  # none yet, or caught mid-replace
        return 0


def memory(iterations: int) -> dict:
    """A long exact run in a process of its own (this script with `--run`), its memory read from outside
    against the iterations its checkpoint holds."""
    location = Path(tempfile.mkdtemp(prefix="bench-vqe-memory-"))
    started = time.monotonic()
    child = subprocess.Popen([sys.executable, __file__, "--run", str(iterations), str(location)],
                             stdout=subprocess.PIPE, text=True)
    samples = []  # (iterations done, resident MB)
    while child.poll() is None:
        try:
            samples.append((iterations_done(location), resident_mb(child.pid)))
        except (FileNotFoundError, ProcessLookupError, RuntimeError):
            break
        time.sleep(0.2)
    output, _ = child.communicate()
    if child.returncode:
        raise RuntimeError(f"the {iterations}-iteration run failed (exit {child.returncode})")
    result = json.loads(output.strip().splitlines()[-1])
    tenth = next(mb for done, mb in samples if done >= iterations // 10)
    last = max(mb for done, mb in samples if done >= iterations * 9 // 10)
    peak = max(mb for _, mb in samples)
    return {"iterations": result["iterations"], "task_runs": result["task_runs"],
            "seconds": round(time.monotonic() - started, 1), f"resident_mb_at_iteration_{iterations // 10}": tenth,
            "resident_mb_in_last_tenth": last, "resident_mb_peak": peak,
            "growth_per_1000_iterations_mb": round((last - tenth) / (iterations * 0.8) * 1000),
            "target_peak_mb": MEMORY_TARGET_MB, "meets_target": peak < MEMORY_TARGET_MB}


def main(repeats: int, memory_iterations: int) -> None:
    server = None
    if not os.environ.get("PREFECT_API_URL"):
        server = SubprocessASGIServer()
        server.start()
        os.environ["PREFECT_API_URL"] = server.api_url  # for the memory run's process too
    try:
        with temporary_settings({PREFECT_API_URL: os.environ["PREFECT_API_URL"]}):
            warmed = warm_up(return_state=True)
            wait_for_task_runs(warmed.state_details.flow_run_id, 0)  # opens the waits' client before any timing
            vqe_flow(0, 2)  # a process's first flow run pays first calls (540 ms before its first circuit, not 300)
            figures: dict = {"repeats": repeats, **measure(repeats), "empty_flow_ms": empty_flow_ms(repeats)}
            if memory_iterations:
                figures["memory"] = memory(memory_iterations)
    finally:
        if server is not None:
            server.stop()
    figures["meets_targets"] = [name for name, value in figures.items()
                                if isinstance(value, dict) and value.get("meets_target")]
    print(json.dumps(figures))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--run"]:
        warm_up()
        iterations, location = int(sys.argv[2]), sys.argv[3]
        print(json.dumps(asyncio.run(vqe_h2(experiment_id=f"bench-vqe-memory-{uuid.uuid4().hex[:12]}",
                                            checkpoint_location=location, max_iterations=iterations,
                                            tolerance=0.0))))
    else:
        main(int(sys.argv[1]) if len(sys.argv) > 1 else 5, int(sys.argv[2]) if len(sys.argv) > 2 else 1000)
