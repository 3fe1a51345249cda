"""Sweeps on a Dask cluster: `run_quantum_sweep` under prefect-dask's `DaskTaskRunner`.

The cluster is this module's own: a scheduler in this process and two worker processes of one
thread each (`distributed.LocalCluster`), stopped by their process ids at the end. What the
workers did is read from the scheduler (`Placements`, a scheduler plugin) and from the files a
`WatchedDevice` leaves for every chunk it runs.
"""

import os
import random
import signal
import socket
import threading
import time
import uuid
from pathlib import Path

import distributed
import numpy as np
import pytest
from distributed.diagnostics.plugin import SchedulerPlugin
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect_dask import DaskTaskRunner

from helpers.programs import ENTANGLED, ROTATION
from helpers.servers import free_port
from helpers.waiting import pid_alive, wait_for
from prefect_braket import (
    BraketDevice,
    Budget,
    BudgetExceededError,
    ClusterUnreachableError,
    DeviceCapabilityError,
    PriceTable,
    run_quantum_batch,
    run_quantum_sweep,
)
from prefect_braket.jobs.budget import SpendingLedger
from prefect_braket.orchestration.sweeps import CONNECT_TIMEOUT_SECONDS

TASK_PRICE = 0.01


class Placements(SchedulerPlugin):
    """What the scheduler saw: every worker process, every task submitted, and the process that ran each."""

    name = "placements"

    def __init__(self, scheduler):
        self.scheduler = scheduler
        self.pids: set[int] = set()
        self.submitted: list = []
        self.ran: dict = {}

    def add_worker(self, scheduler, worker):
        self.pids.add(scheduler.workers[worker].pid)

    def update_graph(self, scheduler, *, keys, **kwargs):
        self.submitted.extend(keys)

    def transition(self, key, start, finish, *args, **kwargs):
        if start == "processing" and finish == "memory":
            self.ran[key] = self.scheduler.workers[kwargs["worker"]].pid


class FlatPrices(PriceTable):
    """Every task at one price, the local simulators' too, so that a budget has something to count."""

    def task_cost(self, device_arn, shots, duration_ms=None):
        return TASK_PRICE


class WatchedExecutor:
    """The local simulator, leaving a file per chunk it runs: its process and its first program's theta.

    With `hold_first`, the first chunk to start anywhere writes `held` (its process and theta) and
    waits for the test to kill its process instead of running."""

    def __init__(self, inner, records: Path, hold_first: bool):
        self.inner, self.records, self.hold_first = inner, records, hold_first

    def describe(self):
        return self.inner.describe()

    def execute(self, programs, shots, job_token, max_parallel, client_token):
        first = programs[0].inputs["theta"]
        if self.hold_first and _claim(self.records / "held", f"{os.getpid()} {first!r}"):
            threading.Event().wait(120)
            raise AssertionError("the test did not kill the worker holding the first chunk")
        results = self.inner.execute(programs, shots, job_token, max_parallel, client_token)
        (self.records / f"ran-{uuid.uuid4().hex}").write_text(f"{os.getpid()} {first!r} {len(programs)}")
        return results


def _claim(path: Path, text: str) -> bool:
    """Creates `path` holding `text` if no process has yet; whole or not at all, for a reader polling it."""
    draft = path.with_name(f"{path.name}.{os.getpid()}.{uuid.uuid4().hex}")
    draft.write_text(text)
    try:
        os.link(draft, path)
        return True
    except FileExistsError:
        return False
    finally:
        draft.unlink()


class WatchedDevice(BraketDevice):
    """A `BraketDevice` whose chunks leave records in `record_dir` (see `WatchedExecutor`).

    Workers unpickle it by importing this module: spawned worker processes start with this
    process's `sys.path`."""

    _block_type_name = "Watched Braket Device (tests)"
    record_dir: str
    hold_first: bool = False

    def executor(self):
        return WatchedExecutor(super().executor(), Path(self.record_dir), self.hold_first)

    def chunks_run(self) -> list[tuple[int, float, int]]:
        """(process id, first theta, programs) of every chunk run to the end."""
        rows = [path.read_text().split() for path in Path(self.record_dir).glob("ran-*")]
        return [(int(pid), float(first), int(count)) for pid, first, count in rows]


def thetas(count: int) -> list[float]:
    """Angles no other test uses, so that no chunk is answered from another test's cache."""
    base = random.uniform(0, 2 * np.pi)
    return [base + index / (count + 1) for index in range(count)]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A scheduler here and two worker processes; every worker process it ever had is ended by its pid."""
    cluster = distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None,
                                       env={"PREFECT_BRAKET_HOME": str(tmp_path_factory.mktemp("workers-home"))})
    placements = Placements(cluster.scheduler)
    cluster.scheduler.add_plugin(placements)
    placements.pids.update(worker.pid for worker in cluster.scheduler.workers.values())
    client = distributed.Client(cluster, set_as_default=False)
    try:
        # Workers import Prefect and the simulator once, before any test times them.
        client.run(__import__, "prefect_braket.orchestration.sweeps")
        yield cluster, client, placements
    finally:
        client.close()
        cluster.close(timeout=30)
        for pid in placements.pids:
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not any(pid_alive(pid) for pid in placements.pids), timeout=30)


@pytest.fixture
def workers(cluster):
    """The cluster with both its workers up (a test that kills one leaves its replacement starting)."""
    cluster, client, placements = cluster
    client.wait_for_workers(2, timeout=180)
    return cluster, placements, {worker.pid for worker in cluster.scheduler.workers.values()}


def on_cluster(cluster):
    return DaskTaskRunner(address=cluster.scheduler_address)


def chunk_states(flow_run_id, chunks: int) -> list[str]:
    """The final states of a flow run's sweep chunks, once the server has recorded them all."""
    def read():
        with get_client(sync_client=True) as client:
            runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
        final = [run.state.name for run in runs if run.name.startswith("run-quantum-sweep-chunk")
                 and run.state and run.state.is_final()]
        return final if len(final) == chunks else None

    return wait_for(read, timeout=60, interval=0.2)


def test_a_sweep_on_two_workers_equals_one_process_in_program_order(workers):
    cluster, placements, worker_pids = workers
    device = BraketDevice()
    angles = thetas(23)
    programs = [ROTATION if index % 2 else ENTANGLED for index in range(len(angles))]
    inputs = [{"theta": theta} for theta in angles]

    @flow
    def in_one_process():
        return run_quantum_batch(device, programs, shots=0, inputs=inputs)

    @flow(task_runner=on_cluster(cluster))
    def on_two_workers():
        return run_quantum_sweep(device, programs, shots=0, inputs=inputs, chunk_size=5)

    submitted = len(placements.submitted)
    expected = [result.values[0] for result in in_one_process()]
    results = on_two_workers()
    assert [result.values[0] for result in results] == pytest.approx(expected, abs=1e-12)
    # Program order, whichever chunk finished first: <Z> = cos(theta), <Z (x) Z> = 1 after ry, cnot.
    assert [result.values[0] for result in results] == pytest.approx(
        [np.cos(theta) if index % 2 else 1.0 for index, theta in enumerate(angles)], abs=1e-9)
    chunks = placements.submitted[submitted:]
    assert len(chunks) == 5  # 23 programs in chunks of 5: 5 task runs, one Dask task each
    assert {placements.ran[key] for key in chunks} == worker_pids  # both workers ran chunks
    assert os.getpid() not in worker_pids


def test_a_rerun_gets_every_chunk_from_the_cache_and_evaluates_nothing(workers, tmp_path):
    cluster, placements, _ = workers
    device = WatchedDevice(record_dir=str(tmp_path), budget=Budget(1.0, FlatPrices(PriceTable.default().table)))
    angles = thetas(12)

    @flow(task_runner=on_cluster(cluster))
    def scan():
        return run_quantum_sweep(device, [ENTANGLED] * len(angles), shots=100,
                                 inputs=[{"theta": theta} for theta in angles], chunk_size=4)

    first = scan(return_state=True)
    assert chunk_states(first.state_details.flow_run_id, 3) == ["Completed"] * 3
    assert len(device.chunks_run()) == 3
    assert device.budget.spent_usd == pytest.approx(12 * TASK_PRICE)

    again = scan(return_state=True)
    assert chunk_states(again.state_details.flow_run_id, 3) == ["Cached"] * 3
    assert len(device.chunks_run()) == 3  # no chunk ran the simulator again
    # The same sampled results (shots=100), from the first run's persisted chunks ...
    assert [r.task_arn for r in again.result()] == [r.task_arn for r in first.result()]
    assert [r.measurement_counts for r in again.result()] == [r.measurement_counts for r in first.result()]
    # ... and not paid for twice.
    assert device.budget.spent_usd == pytest.approx(12 * TASK_PRICE)


def test_a_worker_killed_mid_chunk_has_the_chunk_run_again_elsewhere_counted_once(workers, tmp_path):
    cluster, placements, worker_pids = workers
    # A ledger file: a worker counting anything (or a killed attempt's count surviving) would show in it.
    ledger = SpendingLedger(tmp_path / "ledger.json")
    records = tmp_path / "records"
    records.mkdir()
    device = WatchedDevice(record_dir=str(records), hold_first=True,
                           budget=Budget(1.0, FlatPrices(PriceTable.default().table), ledger))
    angles = thetas(12)
    seen: dict = {}

    def kill_the_holder():
        pid, first = wait_for(lambda: (records / "held").exists() and (records / "held").read_text().split(),
                              timeout=120)
        seen.update(pid=int(pid), first=float(first), spent_while_held=ledger.spent())
        os.kill(int(pid), signal.SIGKILL)

    @flow(task_runner=on_cluster(cluster))
    def scan():
        return run_quantum_sweep(device, [ROTATION] * len(angles), shots=0,
                                 inputs=[{"theta": theta} for theta in angles], chunk_size=3)

    killer = threading.Thread(target=kill_the_holder)
    killer.start()
    try:
        results = scan()
    finally:
        killer.join(timeout=180)
    assert seen["pid"] in worker_pids
    wait_for(lambda: not pid_alive(seen["pid"]))
    assert [r.values[0] for r in results] == pytest.approx([np.cos(theta) for theta in angles], abs=1e-9)
    # The killed chunk ran to the end once, in another worker process; every other chunk once too.
    rerun = [(pid, count) for pid, first, count in device.chunks_run() if first == seen["first"]]
    assert len(rerun) == 1 and rerun[0][0] != seen["pid"] and rerun[0][1] == 3
    assert sorted(first for _, first, _ in device.chunks_run()) == pytest.approx(angles[::3])
    # Reserved once for the whole sweep before any chunk ran, settled once with what the results cost.
    assert seen["spent_while_held"] == pytest.approx(12 * TASK_PRICE)
    assert sum(r.cost_usd for r in results) == pytest.approx(12 * TASK_PRICE)
    assert ledger.spent() == pytest.approx(12 * TASK_PRICE)


def silent_listener() -> tuple[socket.socket, str]:
    """A port that takes connections but never says a word, as another service's port would."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    return listener, f"tcp://127.0.0.1:{listener.getsockname()[1]}"


@pytest.mark.parametrize("case", ["closed port", "not a scheduler"])
def test_a_cluster_address_that_does_not_answer_is_an_error_within_seconds(case):
    listener, address = silent_listener() if case == "not a scheduler" else (None, f"tcp://127.0.0.1:{free_port()}")
    device = BraketDevice()

    @flow(task_runner=DaskTaskRunner(address=address))
    def scan():
        started = time.perf_counter()
        try:
            run_quantum_sweep(device, [ROTATION], shots=0, inputs={"theta": 0.1})
        except ClusterUnreachableError as error:
            return error, time.perf_counter() - started
        raise AssertionError("the sweep ran without a cluster")

    try:
        error, elapsed = scan()
    finally:
        if listener is not None:
            listener.close()
    # Dask's own client would wait 30 s for a closed port, and for ever on a port that takes the connection.
    assert elapsed < (2.0 if case == "closed port" else CONNECT_TIMEOUT_SECONDS + 3.0)
    message = str(error)
    assert address in message and "dask scheduler --port" in message and "Nothing was submitted" in message
    if case == "not a scheduler":
        assert "did not answer as a Dask scheduler" in message
    assert device.budget.spent_usd == 0.0


@pytest.mark.parametrize("case", ["too many qubits", "too many shots", "over budget"])
def test_a_sweep_the_device_cannot_run_is_refused_before_anything_is_submitted(workers, tmp_path, case):
    cluster, placements, _ = workers
    device = WatchedDevice(record_dir=str(tmp_path), budget=Budget(0.05, FlatPrices(PriceTable.default().table)))
    programs = [ROTATION] * 4
    shots = 100
    if case == "too many qubits":
        programs += [ROTATION.replace("qubit[1] q;", "qubit[30] q;")] + [ROTATION] * 3
    elif case == "too many shots":
        shots = 1_000_000
    else:
        programs *= 2  # 8 tasks at $0.01 against $0.05
    expected = {
        "too many qubits": (DeviceCapabilityError, r"Program 4 of the sweep \(in chunk 1\): The program uses 30 "
                                                   r"qubits; braket_sv has 26\. Nothing was submitted\."),
        "too many shots": (DeviceCapabilityError, r"Program 0 of the sweep \(in chunk 0\): 1000000 shots is "
                                                  r"outside what braket_sv takes \(0 to 100000\)\. Run several tasks"),
        "over budget": (BudgetExceededError, r"A sweep of 8 100-shot tasks on local:braket/braket_sv is estimated "
                                             r"at \$0\.0800.*Raise max_cost_usd or run less"),
    }[case]

    @flow(task_runner=on_cluster(cluster))
    def scan():
        return run_quantum_sweep(device, programs, shots=shots, inputs={"theta": thetas(1)[0]}, chunk_size=3)

    submitted = len(placements.submitted)
    with pytest.raises(expected[0], match=expected[1]):
        scan()
    assert len(placements.submitted) == submitted  # the scheduler was sent nothing
    assert device.chunks_run() == []
    assert device.budget.spent_usd == 0.0


def test_a_sweep_outside_a_flow_says_where_to_call_it():
    with pytest.raises(RuntimeError, match=r"call it inside a @flow .* device\.run_batch runs the same programs"):
        run_quantum_sweep(BraketDevice(), [ROTATION], shots=0, inputs={"theta": 0.1})
