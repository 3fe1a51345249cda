"""Blocks: devices, and saved hybrid-job configurations triggered from flows and deployments.

`BraketDevice` is a device and how to reach it: it reports the device's status, queue depth and
execution windows, refuses what the device cannot run before anything is paid for, and runs
programs (`run`, `run_batch`) with the job's priority when inside a hybrid job.

`BraketHybridJob` follows Prefect's `JobBlock`/`JobRun` pattern (as prefect-aws's Glue job
does): `trigger()` submits a job from the saved configuration and returns a
`BraketHybridJobRun`, whose `wait_for_completion()` forwards the job's log and metrics to the
run and whose `fetch_result()` returns its `results.json`.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Optional, Sequence

import anyio
from prefect.blocks.abstract import JobBlock, JobRun
from prefect.blocks.core import Block
from prefect_aws import AwsCredentials
from pydantic import Field, PrivateAttr, field_validator

from prefect_braket.backends.base import JobBackend
from prefect_braket.backends.registry import backend_for, backend_name
from prefect_braket.core.arns import (
    LOCAL_SIMULATORS,
    check_device_arn,
    device_region,
    is_qpu,
)
from prefect_braket.core.home import package_home
from prefect_braket.core.spec import (
    InstanceConfig,
    JobSpec,
    StoppingCondition,
    default_job_name,
)
from prefect_braket.jobs.budget import SpendingLedger
from prefect_braket.orchestration.handle import HybridJob
from prefect_braket.orchestration.watcher import JobWatcher
from prefect_braket.quantum.braket_tasks import BraketTaskExecutor
from prefect_braket.quantum.cost import Budget
from prefect_braket.quantum.devices import (
    DeviceDescription,
    QueueDepth,
    QueueSize,
)
from prefect_braket.quantum.executor import TaskExecutor, run_programs
from prefect_braket.quantum.programs import input_sets, to_program
from prefect_braket.quantum.results import TaskResult
from prefect_braket.quantum.simulators import LocalSimulator, LocalSimulatorExecutor

if TYPE_CHECKING:
    from prefect_braket.backends.aws.backend import AwsBackend

LOGO_URL = "https://cdn.sanity.io/images/3ugk85nk/production/d74b16fe84ce626345adf235a47008fea2869a60-225x225.png"
DOCUMENTATION_URL = "https://docs.aws.amazon.com/braket/latest/developerguide/braket-jobs.html"


class BraketHybridJobRun(JobRun[dict]):
    """A hybrid job started by a `BraketHybridJob` block."""

    def __init__(self, job: HybridJob, poll_interval_seconds: float, allow_pickle: bool):
        self.job = job
        self.poll_interval_seconds = poll_interval_seconds
        self.allow_pickle = allow_pickle

    async def wait_for_completion(self) -> None:
        """Waits for the job to end, logging its events and log lines (and, in a run, its metrics);
        a job that did not complete is logged at ERROR here, and `fetch_result` raises."""
        watcher = JobWatcher(self.job, None, 10.0, self.poll_interval_seconds, None, logger=self.logger)
        while (delay := await anyio.to_thread.run_sync(watcher.step)) is not None:
            await anyio.sleep(delay)
        watcher.ended(raise_on_failure=False)

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
    # The catalog shows this as it is; a docstring's hard line breaks would show there too.
    _description = ("A hybrid job configuration: the code, device and settings of jobs started on demand, on the "
                    "embedded local engine or Amazon Braket.")
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
        description=(
            "Jobs are named '<prefix>-<milliseconds>-<4 hex digits>'; by default the entry point's module name."
        ),
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
        default=None,
        description="The embedded engine's directory; by default $PREFECT_BRAKET_HOME or ~/.prefect_braket.",
    )
    aws_credentials: Optional[AwsCredentials] = Field(
        default=None, title="AWS Credentials",
        description="Credentials for Amazon Braket; the default boto3 chain when unset.",
    )
    poll_interval_seconds: float = Field(default=5.0, gt=0, description="The longest pause between status polls.")
    allow_pickle: bool = Field(default=False, description="Whether pickled results may be read back.")

    def job_backend(self) -> JobBackend:
        """The backend this configuration's jobs run on."""
        if backend_name(self.device, None if self.backend == "auto" else self.backend) == "aws":
            return aws_backend_for(self.aws_credentials, device_region(self.device))
        return backend_for(self.device, "local", **({"root": self.engine_home} if self.engine_home else {}))

    def job_spec(self) -> JobSpec:
        """A new job (with a new name) from this configuration."""
        prefix = self.job_name_prefix or self.entry_point.split(":")[0].split(".")[-1]
        return JobSpec(
            job_name=default_job_name(prefix),
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


DEFAULT_SHOTS_QPU = 1000
DESCRIPTION_MAX_AGE_SECONDS = 60.0


class BraketDevice(Block):
    """A quantum device, local or on Amazon Braket, and how to run programs on it.

    The region follows the device ARN. Inside a hybrid job, programs sent to the job's device
    carry the job's token (its priority queue); programs sent elsewhere run in the normal queue.

    Example:
        Run a parametric program on a saved device:
        ```python
        from prefect_braket import BraketDevice

        device = BraketDevice.load("BLOCK_NAME")
        result = device.run(PROGRAM, shots=100, inputs={"theta": 0.3})
        result.values[0], result.measurement_counts
        ```
    """

    _block_type_name = "Braket Device"
    _description = ("A quantum device, a local simulator or one of Amazon Braket's, and how to run programs on it: "
                    "shots, results bucket, reservation, budget and parallel tasks.")
    _logo_url = LOGO_URL
    _documentation_url = "https://docs.aws.amazon.com/braket/latest/developerguide/braket-devices.html"

    device_arn: str = Field(
        default="local:braket/braket_sv",
        description=(
            "The device ARN (an AWS QPU or simulator ARN, or local:braket/braket_sv or local:braket/braket_dm)."
        ),
    )
    aws_credentials: Optional[AwsCredentials] = Field(
        default=None, title="AWS Credentials",
        description="Credentials for Amazon Braket; the default boto3 chain when unset.",
    )
    s3_bucket: Optional[str] = Field(
        default=None, description="Bucket for task results; by default amazon-braket-{region}-{account}."
    )
    s3_prefix: str = Field(default="tasks", description="Key prefix of task results in the bucket.")
    default_shots: Optional[int] = Field(
        default=None, ge=0,
        description="Shots when a run names none: 1000 on QPUs and 0 (exact) on simulators by default.",
    )
    reservation_arn: Optional[str] = Field(
        default=None, description="A Braket Direct reservation whose time window the tasks run in."
    )
    max_cost_usd: Optional[float] = Field(
        default=None, ge=0, title="Max Cost (USD)",
        description="A budget: a task whose estimated cost would pass it is refused.",
    )
    max_parallel: int = Field(
        default=10, ge=1, le=100, description="Tasks of a batch in flight at once (Braket limits request rates)."
    )

    _budget: Optional[Budget] = PrivateAttr(default=None)
    _budget_given: bool = PrivateAttr(default=False)
    _backend: Optional["AwsBackend"] = PrivateAttr(default=None)
    _device_description: Optional[tuple[float, DeviceDescription]] = PrivateAttr(default=None)

    def __init__(self, budget: Optional[Budget] = None, **data: Any):
        """`budget` shares one `Budget` among several devices; by default the device has its own."""
        super().__init__(**data)
        if budget is not None:
            self._budget, self._budget_given = budget, True

    def model_post_init(self, context: Any) -> None:
        super().model_post_init(context)
        # Made at once, never lazily: threads racing to make it would each count alone, and the
        # copies Prefect makes of a task's inputs carry this object along.
        if self._budget is None:
            self._budget = Budget(self.max_cost_usd)

    def __getstate__(self) -> dict[str, Any]:
        # A backend pickles without its boto3 session (see AwsBackend), so a copy that kept it
        # (a sweep chunk's device on a Dask worker) would call Braket with the worker's default
        # credentials instead of this block's: the copy makes its own from `aws_credentials`.
        state = super().__getstate__()
        return {**state, "__pydantic_private__": {**(state["__pydantic_private__"] or {}), "_backend": None}}

    def __repr_args__(self) -> list[tuple[Optional[str], Any]]:
        # A device's text travels (into a job's hyperparameters, logs, artifacts); its keys must not.
        return [(key, _Hidden(value) if key == "aws_credentials" and value is not None else value)
                for key, value in super().__repr_args__()]

    @field_validator("device_arn")
    @classmethod
    def _known_arn(cls, value: str) -> str:
        return check_device_arn(value)

    @property
    def is_local(self) -> bool:
        return self.device_arn in LOCAL_SIMULATORS

    @property
    def region(self) -> Optional[str]:
        """The device's region (from its ARN), the credentials' region for region-less ARNs, None locally."""
        if self.is_local:
            return None
        credentials_region = self.aws_credentials and self.aws_credentials.region_name
        return device_region(self.device_arn) or credentials_region or "us-east-1"

    @property
    def budget(self) -> Budget:
        """What this device has spent, against `max_cost_usd`.

        Shared by every thread and task using this object; for a saved block, by every load of it
        on this machine too (in `$PREFECT_BRAKET_HOME/budgets/<block document id>.json`, until
        `budget.reset()`). A `budget=` given at construction is used as it is.
        """
        budget = self._budget
        if self._budget_given:
            return budget
        document = self._block_document_id
        with _BUDGET_LOCK:
            if document is not None and budget.ledger.path is None:
                ledger = SpendingLedger(package_home() / "budgets" / f"{document}.json")
                budget = self._budget = Budget(self.max_cost_usd, budget.prices, ledger)
            budget.max_cost_usd = self.max_cost_usd
        return budget

    def backend(self) -> "AwsBackend":
        """The Amazon Braket backend for this device: its credentials, in its region."""
        if self.is_local:
            raise ValueError(f"{self.device_arn} is a local simulator; it has no AWS backend.")
        if self._backend is None:
            self._backend = aws_backend_for(self.aws_credentials, self.region)
        return self._backend

    def braket_client(self) -> Any:
        """A boto3 Braket client in the device's region, with botocore's standard retries."""
        return self.backend().braket()

    # -- what the device is ---------------------------------------------------------------------

    def description(self, max_age_seconds: float = 0.0) -> DeviceDescription:
        """The device's description; a fresh GetDevice unless one younger than `max_age_seconds` is at hand."""
        cached = self._device_description
        if cached and time.monotonic() - cached[0] <= max_age_seconds:
            return cached[1]
        description = self.executor().describe()
        self._device_description = (time.monotonic(), description)
        return description

    def executor(self) -> TaskExecutor:
        """What runs this device's tasks: the local simulators, or Amazon Braket with this block's credentials."""
        if self.is_local:
            return LocalSimulatorExecutor(self.device_arn)
        return BraketTaskExecutor(self.device_arn, self.backend(), self.s3_bucket, self.s3_prefix, self.reservation_arn)

    def warm_up(self) -> None:
        """Readies a local simulator in this process (its imports, its parser's first use), so
        that the first task timed after it is not charged seconds for them; nothing for Braket's
        devices, whose first task costs what the others do."""
        if self.is_local:
            LocalSimulator.warm_up(self.device_arn)

    def status(self) -> str:
        """ONLINE, OFFLINE or RETIRED."""
        return self.description().status

    def queue_depth(self) -> QueueDepth:
        """Tasks waiting in the normal and priority queues, and hybrid jobs queued, as Braket reports them."""
        # A local simulator has no queue.
        return self.description().queue_depth or QueueDepth(*(QueueSize.parse("0"),) * 3)

    def window_open(self, at: Optional[datetime] = None) -> bool:
        """Whether the device runs tasks now (or at `at`): inside one of its execution windows."""
        return self.description(DESCRIPTION_MAX_AGE_SECONDS).window_open(at)

    def next_window_opens(self, at: Optional[datetime] = None) -> Optional[datetime]:
        """When the device next runs tasks (now if a window is open)."""
        return self.description(DESCRIPTION_MAX_AGE_SECONDS).next_window_opens(at)

    def resolve_shots(self, shots: Optional[int]) -> int:
        if shots is not None:
            return shots
        if self.default_shots is not None:
            return self.default_shots
        return DEFAULT_SHOTS_QPU if is_qpu(self.device_arn) else 0

    def estimate_cost(self, shots: Optional[int] = None, tasks: int = 1) -> float:
        """The estimated price of `tasks` tasks with `shots` shots (simulators: at their minimum billed time)."""
        return tasks * self.budget.prices.task_cost(self.device_arn, self.resolve_shots(shots))

    # -- running --------------------------------------------------------------------------------

    def run(self, program: Any, shots: Optional[int] = None, inputs: Optional[dict[str, Any]] = None) -> TaskResult:
        """Runs one program and returns its result, after checking the device can run it.

        Args:
            program: OpenQASM 3 source, a `Program`, a Braket `Circuit` or a Qiskit circuit.
            shots: Shots to take; 0 asks a simulator for exact result types.
            inputs: Values of the program's `input` parameters.

        Raises:
            DeviceUnavailableError: the device is OFFLINE or RETIRED.
            DeviceCapabilityError: too many qubits, shots out of range, unsupported result type.
            BudgetExceededError: the task's estimated cost would pass `max_cost_usd`.
        """
        return self.run_batch([program], shots, [inputs])[0]

    def run_batch(
        self, programs: Sequence[Any], shots: Optional[int] = None,
        inputs: Optional[dict[str, Any] | Sequence[Optional[dict[str, Any]]]] = None,
        max_parallel: Optional[int] = None, client_token: Optional[str] = None,
    ) -> list[TaskResult]:
        """Runs several programs; results in program order.

        On Amazon Braket, at most `max_parallel` requests are in flight at once and results are read
        concurrently; the local simulators run them one after another in this process.

        Every program is checked, and the whole batch's estimated cost reserved against the
        budget, before the first is submitted. `inputs` is one dict for all programs or one per program.
        A `client_token` that is the same on every retry (the Prefect tasks pass one) makes a retried
        batch get back the tasks it already created on Amazon Braket.
        """
        resolved = [to_program(p, i) for p, i in zip(programs, input_sets(programs, inputs), strict=True)]
        budget = self.budget
        return run_programs(self.executor(), self.description(DESCRIPTION_MAX_AGE_SECONDS), resolved,
                            self.resolve_shots(shots), budget, budget.prices, max_parallel or self.max_parallel,
                            client_token)


_BUDGET_LOCK = threading.Lock()


class _Hidden:
    """Credentials as a device's text shows them: which, never their keys."""

    def __init__(self, credentials: Any):
        profile = getattr(credentials, "profile_name", None)
        self.text = f"{type(credentials).__name__}(profile_name={profile!r}, keys hidden)"

    def __repr__(self) -> str:
        return self.text


def aws_backend_for(credentials: Optional[AwsCredentials], region: Optional[str]) -> "AwsBackend":
    """The Amazon Braket backend with prefect-aws credentials (profile, keys, assumed role, endpoint override)."""
    if credentials is None:
        return backend_for("", "aws", region=region)
    return backend_for("", "aws", session=credentials.get_boto3_session(), region=region or credentials.region_name,
                       endpoint_url=credentials.aws_client_parameters.endpoint_url)
