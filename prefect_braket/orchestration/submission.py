"""Prefect tasks that create hybrid jobs, at most once each.

The client token comes from the task run's place in its flow run, so a retried submission (or a
retried flow) re-attaches to the job it started instead of creating a second one. A job
submitted in a flow run is that run's to cancel (`ownership`). Two ways to wait for a QPU
before paying for an instance: a Prefect global concurrency limit of one slot per device
(`run_job_exclusively`), and holding the submission until the device's execution window opens.

Example:
    ```python
    from prefect import flow
    from prefect_braket import JobSpec, get_job_result, submit_job, wait_for_job

    @flow
    def run(spec: JobSpec):
        job = submit_job(spec)
        wait_for_job(job)
        return get_job_result(job)
    ```
"""

from __future__ import annotations

import dataclasses
import time
from datetime import datetime, timezone
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from prefect.logging import get_run_logger

from prefect_braket.backends.base import JobBackend
from prefect_braket.backends.registry import backend_for
from prefect_braket.core.spec import JobSpec
from prefect_braket.orchestration.context import (
    artifact_key,
    client_token,
    current_flow_run_id,
    retry_if_transient,
)
from prefect_braket.orchestration.handle import HybridJob
from prefect_braket.orchestration.ownership import OWNER_TAG, cancel_with_flow_run
from prefect_braket.orchestration.waiting import wait_for_job


def device_limit_name(device_arn: str) -> str:
    """The Prefect global concurrency limit that keeps one of your jobs at a time on a device."""
    return artifact_key("braket-device", device_arn.split("device/")[-1])


def ensure_device_limit(name: str) -> None:
    """Creates the device's limit (1 slot) unless it exists; concurrent creators are fine."""
    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            try:
                client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
            except ObjectAlreadyExists:
                pass


def wait_for_execution_window(device: Any, max_wait_seconds: float) -> None:
    """Holds a submission until the device's execution window opens, rather than paying for an
    idle job instance; raises if it opens later than `max_wait_seconds` from now."""
    opens = device.next_window_opens()
    now = datetime.now(timezone.utc)
    if opens is None or opens <= now:
        return
    wait = (opens - now).total_seconds()
    if wait > max_wait_seconds:
        raise TimeoutError(
            f"{device.device_arn} opens its next execution window at {opens.isoformat()}, {wait:.0f} s from now, "
            f"later than max_window_wait_seconds={max_wait_seconds:.0f}: submit closer to then or wait longer."
        )
    get_run_logger().info("Holding the submission until %s opens its execution window at %s", device.device_arn, opens)
    time.sleep(wait)


def _create(spec: JobSpec, backend: JobBackend | None, window_device: Any, max_window_wait_seconds: float) -> HybridJob:
    if window_device is not None:
        wait_for_execution_window(window_device, max_window_wait_seconds)
    backend = backend or backend_for(spec.device)
    if (run := current_flow_run_id()) is not None:
        spec = dataclasses.replace(spec, tags={**spec.tags, OWNER_TAG: run})
    arn = backend.create_job(spec, client_token=client_token())
    get_run_logger().info("Hybrid job %s submitted: %s (device %s)", spec.job_name, arn, spec.device)
    job = HybridJob(arn, backend)
    cancel_with_flow_run(job)
    return job


@task(name="submit-braket-job", cache_policy=NO_CACHE, retries=3, retry_delay_seconds=[1, 5, 20],
      retry_jitter_factor=0.5, retry_condition_fn=retry_if_transient)
def submit_job(
    spec: JobSpec, backend: JobBackend | None = None, wait_for_window: Any = None,
    max_window_wait_seconds: float = 86400.0,
) -> HybridJob:
    """Creates the job described by `spec`; a retry of this task returns the same job.

    Args:
        spec: The job to create.
        backend: Where to run it; by default chosen from the device ARN.
        wait_for_window: A `BraketDevice` whose execution window the submission waits for.
        max_window_wait_seconds: The longest that wait may be; a later window is an error.
    """
    return _create(spec, backend, wait_for_window, max_window_wait_seconds)


@task(name="run-braket-job-exclusively", cache_policy=NO_CACHE, retries=3, retry_delay_seconds=[1, 5, 20],
      retry_jitter_factor=0.5, retry_condition_fn=retry_if_transient)
def run_job_exclusively(
    spec: JobSpec, backend: JobBackend | None = None, wait_for_window: Any = None,
    max_window_wait_seconds: float = 86400.0, slot_timeout_seconds: float | None = None,
    poll_interval_seconds: float = 5.0,
) -> HybridJob:
    """Submits a job and waits for it while holding the device's global concurrency limit.

    The limit (`braket-device-qpu-<provider>-<name>`, `braket-device-qpu-ionq-forte-1` say; one
    slot, created if missing) is shared by every flow on the same Prefect server, so at most one
    of your jobs runs on the QPU at a time; the next waits here, not in Braket's queue. Returns the ended job.
    """
    name = device_limit_name(spec.device)
    ensure_device_limit(name)
    get_run_logger().info("Waiting for a slot of concurrency limit %s", name)
    with concurrency(name, occupy=1, strict=True, timeout_seconds=slot_timeout_seconds):
        job = _create(spec, backend, wait_for_window, max_window_wait_seconds)
        # The ended job is returned, as `hybrid_job` returns it; its `result()` says how it failed.
        wait_for_job.fn(job, poll_interval_seconds=poll_interval_seconds, raise_on_failure=False)
    return job
