"""Blocks: a saved hybrid-job configuration, triggered from flows and deployments.

`BraketHybridJob` follows Prefect's `JobBlock`/`JobRun` pattern (as prefect-aws's Glue job
does): `trigger()` submits a job from the saved configuration and returns a
`BraketHybridJobRun`, whose `wait_for_completion()` forwards the job's log and metrics to the
run and whose `fetch_result()` returns its `results.json`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal, Optional

import anyio
from prefect.blocks.abstract import JobBlock, JobRun
from prefect_aws import AwsCredentials
from pydantic import Field

from prefect_braket.backend import JobBackend, backend_for
from prefect_braket.job_handle import HybridJob
from prefect_braket.job_spec import InstanceConfig, JobSpec, StoppingCondition
from prefect_braket.tasks import JobWatcher

LOGO_URL = "https://cdn.sanity.io/images/3ugk85nk/production/d74b16fe84ce626345adf235a47008fea2869a60-225x225.png"
DOCUMENTATION_URL = "https://docs.aws.amazon.com/braket/latest/developerguide/braket-jobs.html"


class BraketHybridJobRun(JobRun[dict]):
    """A hybrid job started by a `BraketHybridJob` block."""

    def __init__(self, job: HybridJob, poll_interval_seconds: float, allow_pickle: bool):
        self.job = job
        self.poll_interval_seconds = poll_interval_seconds
        self.allow_pickle = allow_pickle

    async def wait_for_completion(self) -> None:
        """Waits for the job to end, logging its events and log lines (and, in a run, its metrics)."""
        watcher = JobWatcher(self.job, None, 10.0, self.poll_interval_seconds, None, logger=self.logger)
        while (delay := await anyio.to_thread.run_sync(watcher.step)) is not None:
            await anyio.sleep(delay)

    async def fetch_result(self) -> dict:
        """The job's `results.json`; raises `JobFailedError` if it failed or was cancelled."""
        return await anyio.to_thread.run_sync(self.job.fetch_result, self.allow_pickle)


class BraketHybridJob(JobBlock[dict]):
    """A hybrid job configuration: the code, device and settings of jobs to start on demand.

    Example:
        Start a job from a saved configuration and wait for its result:
        ```python
        from prefect_braket import BraketHybridJob

        block = BraketHybridJob.load("BLOCK_NAME")
        run = await block.trigger()
        await run.wait_for_completion()
        result = await run.fetch_result()
        ```
    """

    _block_type_name = "Braket Hybrid Job"
    _logo_url = LOGO_URL
    _documentation_url = DOCUMENTATION_URL

    device: str = Field(
        default="local:braket/braket_sv",
        description="The device whose tasks get the job's priority: an AWS device ARN or local:braket/braket_sv.",
    )
    source_module: str = Field(description="Path of the job's source: a Python file, a directory or a .tar.gz.")
    entry_point: str = Field(
        description="The module (and function) to run, such as 'algorithm.train:main', inside the source."
    )
    job_name_prefix: Optional[str] = Field(
        default=None,
        description="Jobs are named '<prefix>-<milliseconds>'; by default the entry point's module name.",
    )
    hyperparameters: dict[str, str] = Field(
        default_factory=dict, description="String values bound to the entry point's typed arguments."
    )
    input_data: dict[str, str] = Field(
        default_factory=dict, description="Input channel names mapped to local paths or S3 URIs."
    )
    max_runtime_seconds: int = Field(
        default=432000, ge=1, le=432000, description="The job is stopped after this many seconds."
    )
    instance_type: str = Field(default="ml.m5.large", description="The job instance type on Amazon Braket.")
    tags: dict[str, str] = Field(default_factory=dict, description="Tags put on every job started.")
    backend: Literal["auto", "local", "aws"] = Field(
        default="auto",
        description="Where jobs run: the embedded engine (local), Amazon Braket (aws), or by the device ARN (auto).",
    )
    engine_home: Optional[str] = Field(
        default=None, description="The embedded engine's directory; by default $PREFECT_BRAKET_HOME or ~/.prefect_braket."
    )
    aws_credentials: Optional[AwsCredentials] = Field(
        default=None, description="Credentials for Amazon Braket; the default boto3 chain when unset."
    )
    poll_interval_seconds: float = Field(default=5.0, gt=0, description="The longest pause between status polls.")
    allow_pickle: bool = Field(default=False, description="Whether pickled results may be read back.")

    def job_backend(self) -> JobBackend:
        """The backend this configuration's jobs run on."""
        options: dict[str, Any] = {"root": self.engine_home} if self.engine_home else {}
        return backend_for(self.device, None if self.backend == "auto" else self.backend, **options)

    def job_spec(self) -> JobSpec:
        """A new job (with a new name) from this configuration."""
        prefix = self.job_name_prefix or self.entry_point.split(":")[0].split(".")[-1].replace("_", "-")
        return JobSpec(
            job_name=f"{prefix}-{int(time.time() * 1000)}",
            device=self.device,
            source_module=Path(self.source_module),
            entry_point=self.entry_point,
            hyperparameters=dict(self.hyperparameters),
            input_data=dict(self.input_data),
            instance_config=InstanceConfig(instanceType=self.instance_type),
            stopping_condition=StoppingCondition(maxRuntimeInSeconds=self.max_runtime_seconds),
            tags=dict(self.tags),
        )

    async def trigger(self) -> BraketHybridJobRun:
        """Submits a job from this configuration and returns its run."""
        spec = self.job_spec()
        backend = self.job_backend()
        arn = await anyio.to_thread.run_sync(backend.create_job, spec)
        self.logger.info("Hybrid job %s submitted: %s", spec.job_name, arn)
        return BraketHybridJobRun(HybridJob(arn, backend), self.poll_interval_seconds, self.allow_pickle)
