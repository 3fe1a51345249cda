"""Sweeps: many programs on one device, in chunks that run as task runs on the flow's task runner.

`run_quantum_sweep` splits the programs into chunks of `chunk_size`, each one task run
(`run-quantum-sweep-chunk`) cached on its programs (`QuantumProgramCache`, as `run_quantum_batch`)
and retried on transient errors. Under a `DaskTaskRunner` the chunks run on the cluster's workers,
so a local-simulator sweep uses every core of every worker instead of one core of the flow's
process; under the default task runner they run in the flow's threads, with the same results.

What stays in the flow's process, so that it holds however many workers run the chunks:
- the checks: a `DaskTaskRunner(address=...)` whose scheduler does not answer is an error within
  seconds, and every program is checked against the device's description, before anything is
  submitted (an error names the program's index);
- the budget: the whole sweep's estimate is reserved against the device's budget (and, inside a
  hybrid job with `max_cost_usd`, the job's) before the first chunk is submitted, and each chunk
  is settled with what its results cost once it comes back (a cached chunk costs $0, a failed
  one $0, as a failed batch does). A worker gets a pickled copy of the device, whose budget is a
  copy too: counting there would count against a copy, or (a saved block's ledger file on the
  same machine) count the sweep twice, so workers count nothing.

Example:
    ```python
    from prefect import flow
    from prefect_dask import DaskTaskRunner
    from prefect_braket import BraketDevice, run_quantum_sweep

    @flow(task_runner=DaskTaskRunner(address="tcp://scheduler.example:8786"))  # or DaskTaskRunner() for a local cluster
    def scan(thetas: list[float]):
        device = BraketDevice(device_arn="local:braket/braket_sv")
        results = run_quantum_sweep(device, [PROGRAM] * len(thetas), shots=0,
                                    inputs=[{"theta": t} for t in thetas], chunk_size=100)
        return [r.values[0] for r in results]          # in the order of `thetas`
    ```
"""

from __future__ import annotations

import asyncio
import socket
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Optional, Sequence

from prefect import task
from prefect.context import FlowRunContext
from prefect.futures import as_completed
from prefect.logging import get_run_logger
from prefect.tasks import exponential_backoff

from prefect_braket.core.errors import PrefectBraketError
from prefect_braket.jobs.budget import JobBudget
from prefect_braket.orchestration.blocks import DESCRIPTION_MAX_AGE_SECONDS, BraketDevice
from prefect_braket.orchestration.context import client_token, in_flow_run, retry_if_transient
from prefect_braket.orchestration.quantum_tasks import QuantumProgramCache
from prefect_braket.quantum.devices import check_runnable, job_priority_token
from prefect_braket.quantum.programs import Program, input_sets, to_program
from prefect_braket.quantum.results import TaskResult

DEFAULT_CHUNK_SIZE = 100
# Long enough for a scheduler across a slow network, short enough that a wrong address is an
# error within seconds.
CONNECT_TIMEOUT_SECONDS = 5.0


class ClusterUnreachableError(PrefectBraketError, ConnectionError):
    """The flow's task runner names a cluster address that does not answer."""


@task(name="run-quantum-sweep-chunk", cache_policy=QuantumProgramCache(), persist_result=True, retries=4,
      retry_delay_seconds=exponential_backoff(2), retry_jitter_factor=0.5, retry_condition_fn=retry_if_transient)
def run_sweep_chunk(device: BraketDevice, programs: Sequence[Program], shots: int,
                    max_parallel: Optional[int] = None) -> list[TaskResult]:
    """Runs one chunk of a sweep and prices its results; `run_quantum_sweep` checked the programs
    and reserved their cost in the flow's process, so nothing is counted here."""
    device_arn = device.device_arn
    priority = job_priority_token(device_arn)
    results = device.executor().execute(programs, shots, priority, max_parallel or device.max_parallel,
                                        client_token())
    prices = device.budget.prices
    for result in results:
        result.queue_priority = "Priority" if priority else "Normal"
        result.cost_usd = prices.task_cost(device_arn, shots, result.execution_duration_ms)
    return results


def run_quantum_sweep(
    device: BraketDevice, programs: Sequence[Any], shots: Optional[int] = None,
    inputs: Optional[dict[str, Any] | Sequence[Optional[dict[str, Any]]]] = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE, max_parallel: Optional[int] = None,
) -> list[TaskResult]:
    """Runs `programs` on `device` in chunks of `chunk_size`, one task run each, on the flow's task
    runner; returns their results in program order, the same values as `device.run_batch`.

    Call it inside a flow. Every program is checked and the sweep's estimated cost reserved in
    this process before the first chunk is submitted (see the module's docstring); then the call
    waits for every chunk, so a failed chunk fails the sweep only once the others have finished
    (and been cached: a re-run of the flow runs only the chunks that failed).

    Args:
        device: The device; each chunk's task run gets a copy of it.
        programs: OpenQASM 3 sources, `Program`s, Braket or Qiskit circuits.
        shots: Shots per program (the device's default when None; 0 asks a simulator for exact results).
        inputs: One dict of `input` values for every program, or one per program.
        chunk_size: Programs per task run. A task run costs about 0.35 s on a Dask worker (most of
            it Prefect serializing its settings for every task run it sends; `bench/sweep_cluster.py`,
            2 cores) and 10-30 ms in the flow's threads, so chunks of seconds of work make it small;
            smaller chunks balance the load between workers and repeat less on a retry.
        max_parallel: On Amazon Braket, requests in flight per chunk (the device's `max_parallel`
            when None); chunks on different workers add up.

    Raises:
        DeviceCapabilityError, ProgramSyntaxError: a program the device cannot run (its index named).
        DeviceUnavailableError: the device is OFFLINE or RETIRED.
        BudgetExceededError: the sweep's estimate would pass the device's (or the job's) budget.
        ClusterUnreachableError: the flow's task runner names a cluster address that does not answer.
    """
    if not in_flow_run():
        raise RuntimeError(
            "run_quantum_sweep submits its chunks to the flow's task runner: call it inside a @flow "
            "(such as @flow(task_runner=DaskTaskRunner(address=...))), not in a task; outside a flow, "
            "device.run_batch runs the same programs in this process."
        )
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a whole number of programs, at least 1; got {chunk_size!r}.")
    context = FlowRunContext.get()
    assert context is not None  # in_flow_run() said so
    runner = context.task_runner
    _check_cluster_answers(runner)
    shots = device.resolve_shots(shots)
    resolved = _checked_programs(device, programs, inputs, shots, chunk_size)
    chunks = [resolved[start:start + chunk_size] for start in range(0, len(resolved), chunk_size)]

    per_program = device.budget.prices.task_cost(device.device_arn, shots)
    budgets = [device.budget, *filter(None, [JobBudget.current()])]
    _reserve(budgets, per_program * len(resolved),
             f"A sweep of {len(resolved)} {shots}-shot tasks on {device.device_arn}")
    unsettled = {index: per_program * len(chunk) for index, chunk in enumerate(chunks)}
    get_run_logger().info("Sweep of %d programs on %s: %d chunks of up to %d, on %s", len(resolved),
                          device.device_arn, len(chunks), chunk_size, type(runner).__name__)
    try:
        futures = {}
        for index, chunk in enumerate(chunks):
            futures[run_sweep_chunk.submit(device, chunk, shots, max_parallel)] = index
        results: list[list[TaskResult]] = [[] for _ in chunks]
        failures: list[tuple[int, BaseException]] = []
        for future in as_completed(list(futures)):
            index = futures[future]
            try:
                results[index] = future.result()
            except Exception as error:
                failures.append((index, error))
                continue
            # A cached chunk was paid for by the run that made it.
            cost = 0.0 if future.state.name == "Cached" else sum(r.cost_usd or 0.0 for r in results[index])
            _settle(budgets, unsettled.pop(index), cost)
    finally:
        # Chunks that failed, or were never submitted, cost nothing.
        _settle(budgets, sum(unsettled.values()), 0.0)
    if failures:
        index, first_failure = min(failures, key=lambda failure: failure[0])
        first = index * chunk_size
        first_failure.add_note(
            f"Chunk {index} of the sweep (programs {first} to {first + len(chunks[index]) - 1}) failed"
            + (f", and {len(failures) - 1} other chunk(s)" if len(failures) > 1 else "")
            + f"; the other {len(chunks) - len(failures)} are cached: a re-run of the flow runs only the failed ones."
        )
        raise first_failure
    return [result for chunk in results for result in chunk]


def _checked_programs(device: BraketDevice, programs: Sequence[Any], inputs: Any, shots: int,
                      chunk_size: int) -> list[Program]:
    """Every program resolved and checked against the device, before anything is submitted."""
    description = device.description(DESCRIPTION_MAX_AGE_SECONDS)
    resolved = []
    for index, (program, values) in enumerate(zip(programs, input_sets(programs, inputs), strict=True)):
        try:
            resolved.append(to_program(program, values))
            check_runnable(description, resolved[-1], shots)
        except (ValueError, TypeError) as error:  # DeviceCapabilityError and ProgramSyntaxError among them
            raise type(error)(f"Program {index} of the sweep (in chunk {index // chunk_size}): {error} "
                              "Nothing was submitted.") from error
    return resolved


def _check_cluster_answers(runner: Any) -> None:
    """Raises `ClusterUnreachableError` within seconds if the flow's `DaskTaskRunner` names a
    scheduler that does not answer. Dask's own client waits 30 s for a closed port, and for ever
    where something other than a scheduler listens (the scheduler's dashboard port, say)."""
    prefect_dask = sys.modules.get("prefect_dask")
    if prefect_dask is None or not isinstance(runner, prefect_dask.DaskTaskRunner) or not runner.address:
        return  # the flow's own threads, or a cluster the runner starts itself
    from distributed.comm import connect  # prefect-dask's own dependency
    from distributed.comm.addressing import get_address_host_port
    from distributed.security import Security

    address = runner.address
    try:
        host, port = get_address_host_port(address)
    except ValueError:
        host = None  # a transport without ports (inproc://, ucx://): only the handshake tells
    if host is not None:
        # Fails at once for a closed port or an unknown host, where Dask's client retries for 30 s.
        try:
            socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_SECONDS).close()
        except OSError as error:
            raise ClusterUnreachableError(_unreachable(runner, _described(error))) from None
    security = runner.client_kwargs.get("security")
    connection_args = (security if isinstance(security, Security) else Security()).get_connection_args("client")

    async def handshake() -> None:
        comm = await connect(address, timeout=CONNECT_TIMEOUT_SECONDS, **connection_args)
        await comm.close()

    # In a thread of its own: the flow may be async, with this thread's event loop running.
    with ThreadPoolExecutor(1) as thread:
        try:
            thread.submit(asyncio.run, asyncio.wait_for(handshake(), CONNECT_TIMEOUT_SECONDS)).result()
        except OSError as error:  # TimeoutError among them
            raise ClusterUnreachableError(_unreachable(runner, (
                f"it takes connections but did not answer as a Dask scheduler within {CONNECT_TIMEOUT_SECONDS:g} s: "
                + _described(error)))) from None


def _described(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


def _unreachable(runner: Any, why: str) -> str:
    address = runner.address
    return (
        f"The flow's {type(runner).__name__} names the Dask scheduler at {address!r}, which does not answer "
        f"({why}). Start a scheduler there (`dask scheduler --port {address.rpartition(':')[2]}`, then `dask worker "
        f"<its address>` on each machine), give DaskTaskRunner(address=...) the address the scheduler prints "
        "('Scheduler at: tcp://...', not its dashboard's), or use DaskTaskRunner() without an address for a cluster "
        "on this machine. Nothing was submitted."
    )


def _reserve(budgets: Sequence[Any], estimate_usd: float, what: str) -> None:
    """Reserves `estimate_usd` against every budget, or against none if one refuses."""
    reserved: list[Any] = []
    try:
        for budget in budgets:
            budget.reserve(estimate_usd, what)
            reserved.append(budget)
    except BaseException:
        _settle(reserved, estimate_usd, 0.0)
        raise


def _settle(budgets: Sequence[Any], reserved_usd: float, actual_usd: float) -> None:
    for budget in budgets:
        budget.settle(reserved_usd, actual_usd)
