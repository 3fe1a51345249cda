"""Prefect tasks that run quantum programs on a `BraketDevice`, cached and retried.

The cache key is the device ARN (and reservation), the program's canonical form with its
inputs, and the shots: never credentials or clients, and the same for `0.5` and
`np.float64(0.5)`. A re-run flow therefore gets its finished tasks back without paying for
their shots again. Retries happen only for what can succeed on retry: throttling, service
errors, a device that is briefly OFFLINE.

Example:
    ```python
    from prefect import flow
    from prefect_braket import BraketDevice, run_quantum_task

    @flow
    def scan(thetas: list[float]):
        device = BraketDevice(device_arn="local:braket/braket_sv")
        return [run_quantum_task(device, PROGRAM, shots=100, inputs={"theta": t}).values[0] for t in thetas]
    ```
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

from prefect import task
from prefect.cache_policies import CachePolicy
from prefect.tasks import exponential_backoff
from prefect.utilities.hashing import hash_objects

from prefect_braket.orchestration.blocks import BraketDevice
from prefect_braket.orchestration.context import client_token, retry_if_transient
from prefect_braket.quantum.programs import input_sets, to_program
from prefect_braket.quantum.results import TaskResult


@dataclass
class QuantumProgramCache(CachePolicy):
    """Keys a run by what determines its result: device, canonical programs and inputs, shots."""

    def compute_key(
        self, task_ctx: Any, inputs: dict[str, Any], flow_parameters: dict[str, Any], **kwargs: Any
    ) -> Optional[str]:
        device: BraketDevice = inputs["device"]
        if "programs" in inputs:
            programs = inputs["programs"]
            sets = input_sets(programs, inputs.get("inputs"))
            keys = [to_program(p, i).cache_key() for p, i in zip(programs, sets, strict=True)]
        else:
            keys = [to_program(inputs["program"], inputs.get("inputs")).cache_key()]
        return hash_objects(
            task_ctx.task.name, device.device_arn, device.reservation_arn, device.resolve_shots(inputs.get("shots")),
            keys, raise_on_failure=True,
        )


@task(name="run-quantum-task", cache_policy=QuantumProgramCache(), persist_result=True, retries=4,
      retry_delay_seconds=exponential_backoff(2), retry_jitter_factor=0.5, retry_condition_fn=retry_if_transient)
def run_quantum_task(
    device: BraketDevice, program: Any, shots: Optional[int] = None, inputs: Optional[dict[str, Any]] = None
) -> TaskResult:
    """Runs one program on `device`; cached on the device, the canonical program, inputs and shots."""
    return device.run_batch([program], shots=shots, inputs=[inputs], client_token=client_token())[0]


@task(name="run-quantum-batch", cache_policy=QuantumProgramCache(), persist_result=True, retries=4,
      retry_delay_seconds=exponential_backoff(2), retry_jitter_factor=0.5, retry_condition_fn=retry_if_transient)
def run_quantum_batch(
    device: BraketDevice, programs: Sequence[Any], shots: Optional[int] = None,
    inputs: Optional[dict[str, Any] | Sequence[dict[str, Any]]] = None, max_parallel: Optional[int] = None,
) -> list[TaskResult]:
    """Runs programs concurrently (at most `max_parallel`, default the device's) as one task run."""
    return device.run_batch(programs, shots=shots, inputs=inputs, max_parallel=max_parallel,
                            client_token=client_token())
