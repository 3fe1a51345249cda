"""`hybrid_job`: Braket's decorator, running on the embedded engine or on Amazon Braket.

Code written for `braket.jobs.hybrid_job` adopts it by changing its import. A call of the
decorated function goes through three steps: the decorator's options are checked once, at
decoration (`JobOptions`); each call is packed into a job's source (`packaging.packaged`); the
job is submitted, inside a Prefect flow as a task run retried without ever creating a second job
(`submission`), and returned as a `HybridJob` at once unless asked to wait.
"""

from __future__ import annotations

import functools
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterable

from prefect_braket.backends.base import JobBackend
from prefect_braket.backends.registry import backend_for, backend_name
from prefect_braket.core.arns import check_device_arn, is_s3_uri
from prefect_braket.core.spec import (
    RESERVED_CHANNEL,
    CheckpointConfig,
    InstanceConfig,
    JobSpec,
    OutputDataConfig,
    StoppingCondition,
    validate_job_name,
)
from prefect_braket.jobs import PersistedJobDataFormat
from prefect_braket.orchestration.blocks import BraketDevice
from prefect_braket.orchestration.context import in_flow_run
from prefect_braket.orchestration.handle import HybridJob
from prefect_braket.orchestration.packaging import packaged
from prefect_braket.orchestration.submission import run_job_exclusively, submit_job
from prefect_braket.orchestration.waiting import wait_for_job
from prefect_braket.quantum.cost import PriceTable, UnknownPriceError


@dataclass(frozen=True)
class JobOptions:
    """`hybrid_job`'s options, checked once, at decoration: a device that does not exist, a bad
    name or budget, a reserved channel fail there, before any call packs or uploads anything."""

    device: str
    device_block: BraketDevice | None
    backend: JobBackend | None  # given, or the block's (its credentials and region)
    backend_name: str
    include_modules: list[str | ModuleType]
    requirements: list[str]
    channels: dict[str, str]
    data_format: PersistedJobDataFormat
    job_name: str | None
    max_cost_usd: float | None
    wait_until_complete: bool
    device_concurrency_limit: bool
    wait_for_execution_window: bool
    max_window_wait_seconds: float
    create_job: dict[str, Any] = field(default_factory=dict)  # CreateJob's own settings, as JobSpec names them

    @classmethod
    def resolve(cls, device: str | BraketDevice, local: bool, backend: str | JobBackend | None,
                include_modules: str | ModuleType | Iterable[str | ModuleType] | None,
                dependencies: str | Path | list[str] | None, input_data: str | Path | dict[str, str | Path] | None,
                data_format: PersistedJobDataFormat | str, job_name: str | None, max_cost_usd: float | None,
                **settings: Any) -> "JobOptions":
        block = device if isinstance(device, BraketDevice) else None
        arn = check_device_arn(block.device_arn if block is not None else device)
        if job_name is not None:
            validate_job_name(job_name)
        if max_cost_usd is not None and not (isinstance(max_cost_usd, (int, float)) and max_cost_usd >= 0):
            raise ValueError(f"max_cost_usd={max_cost_usd!r} must be a number of US dollars, at least 0.")
        given = None if backend is None or isinstance(backend, str) else backend
        name = backend_name(arn, backend if isinstance(backend, str) else None, local)
        if given is None and block is not None and not block.is_local and name == "aws":
            given = block.backend()
        channels = {} if input_data is None else input_data if isinstance(input_data, dict) else {"input": input_data}
        if RESERVED_CHANNEL in channels:
            raise ValueError(f"Input channel name {RESERVED_CHANNEL!r} is reserved; choose another channel name.")
        modules = [include_modules] if isinstance(include_modules, (str, ModuleType)) else list(include_modules or [])
        creation = {key: settings.pop(key) for key in (
            "image_uri", "instance_config", "copy_checkpoints_from_job", "checkpoint_config", "role_arn",
            "stopping_condition", "output_data_config", "tags", "reservation_arn")}
        return cls(device=arn, device_block=block, backend=given, backend_name=name, include_modules=modules,
                   requirements=_requirement_lines(dependencies), channels={c: str(p) for c, p in channels.items()},
                   data_format=PersistedJobDataFormat.parse(data_format), job_name=job_name, max_cost_usd=max_cost_usd,
                   create_job=creation, **settings)

    @property
    def local_paths(self) -> dict[str, str]:
        """The input channels given as local paths, which keep working inside the function."""
        return {channel: path for channel, path in self.channels.items() if not is_s3_uri(path)}

    def job_backend(self) -> JobBackend:
        # Per call: the engine's home is read when the job is submitted.
        return self.backend or backend_for(self.device, self.backend_name)

    def spec(self, **fields: Any) -> JobSpec:
        """The job's `JobSpec`: these options, and the call's own `fields` (name, source, ...)."""
        settings = self.create_job
        return JobSpec(
            device=self.device, input_data=dict(self.channels),
            instance_config=settings["instance_config"] or InstanceConfig(),
            stopping_condition=settings["stopping_condition"] or StoppingCondition(),
            checkpoint_config=settings["checkpoint_config"] or CheckpointConfig(),
            output_data_config=settings["output_data_config"] or OutputDataConfig(),
            copy_checkpoints_from_job=settings["copy_checkpoints_from_job"], image_uri=settings["image_uri"],
            role_arn=settings["role_arn"], reservation_arn=settings["reservation_arn"],
            tags=dict(settings["tags"] or {}), python_version=f"{sys.version_info.major}.{sys.version_info.minor}",
            **fields,
        )

    def budget(self, backend: JobBackend) -> dict[str, float] | None:
        """What the job's `JobBudget` starts from, or None without `max_cost_usd`."""
        if self.max_cost_usd is None:
            return None
        config = self.create_job["instance_config"] or InstanceConfig()
        return {"max_cost_usd": self.max_cost_usd, "instance_usd_per_hour": _instance_usd_per_hour(backend, config)}


def hybrid_job(
    *,
    device: str | BraketDevice,
    include_modules: str | ModuleType | Iterable[str | ModuleType] | None = None,
    dependencies: str | Path | list[str] | None = None,
    local: bool = False,
    job_name: str | None = None,
    image_uri: str | None = None,
    input_data: str | Path | dict[str, str | Path] | None = None,
    wait_until_complete: bool = False,
    instance_config: InstanceConfig | None = None,
    copy_checkpoints_from_job: str | None = None,
    checkpoint_config: CheckpointConfig | None = None,
    role_arn: str | None = None,
    stopping_condition: StoppingCondition | None = None,
    output_data_config: OutputDataConfig | None = None,
    tags: dict[str, str] | None = None,
    reservation_arn: str | None = None,
    data_format: PersistedJobDataFormat | str = PersistedJobDataFormat.PLAINTEXT,
    backend: str | JobBackend | None = None,
    device_concurrency_limit: bool = False,
    wait_for_execution_window: bool = False,
    max_window_wait_seconds: float = 86400.0,
    max_cost_usd: float | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., HybridJob]]:
    """Turns a function into a hybrid job: each call submits one job and returns its `HybridJob`.

    Args:
        device: The device whose tasks get the job's priority: an AWS device ARN, or
            "local:braket/braket_sv" / "local:braket/braket_dm" for the local simulators, or a
            `BraketDevice` block. Inside the job, `get_job_device_arn()` returns its ARN.
        include_modules: Modules pickled by value with the function (the function's own module
            always is, unless it is an installed package).
        dependencies: A requirements file or a list of requirements. On Amazon Braket the
            container installs them; the embedded engine checks this environment has them.
        local: Braket's local mode; here it means the embedded engine (no Docker needed).
        job_name: Braket's rules (1-50 letters, digits, hyphens); default: the function's name,
            a millisecond timestamp and four hex digits (`train-1764582000000-3fa2`), never the
            same twice, where Braket's own names collide for jobs submitted together.
        input_data: A local path or S3 URI (channel "input"), or a dict of channel to either.
            Relative local paths keep working inside the function.
        wait_until_complete: Wait for the job before returning its handle.
        copy_checkpoints_from_job: A job ARN whose checkpoints the new job starts with; load them
            with `load_job_checkpoint(job_name=<that job's name>)`.
        data_format: How the return value is saved: "plaintext" (JSON) or "pickle" (read back
            with `result(allow_pickle=True)`).
        backend: "local" (embedded engine), "aws" (Amazon Braket) or a backend instance; by
            default, "local" for `local:` devices and "aws" for AWS ARNs.
        device_concurrency_limit: In a flow, hold a Prefect global concurrency limit of one slot
            per device while the job runs, so that one of your jobs at a time uses the QPU; the
            call then returns once the job has ended.
        wait_for_execution_window: In a flow, hold the submission until the device's execution
            window opens (at most `max_window_wait_seconds`), rather than paying for an idle
            job instance.
        image_uri: A container image URI, or "base" (the default), "pytorch", "tensorflow" or
            "cudaq" for Braket's own images in the device's region.
        max_cost_usd: A budget for the whole job: its quantum tasks run through `BraketDevice`
            (each refused if it would pass the budget) plus its instance time on Amazon Braket
            (the price table's rate for `instance_config`). The job is stopped, FAILED with a
            `BudgetExceededError` reason, once the two together pass it. A replacement after a
            lost instance counts afresh.
        instance_config, checkpoint_config, stopping_condition, output_data_config, role_arn,
        tags, reservation_arn: As in Braket's CreateJob; the embedded engine enforces
            `stopping_condition.maxRuntimeInSeconds`.

    Example:
        ```python
        from prefect_braket import hybrid_job
        from prefect_braket.jobs import log_metric

        @hybrid_job(device="local:braket/braket_sv")
        def train(num_tasks: int = 1, lr: float = 0.1):
            theta = 0.0
            for i in range(num_tasks):
                theta += lr
                log_metric(metric_name="theta", value=theta, iteration_number=i)
            return {"final_theta": theta}

        job = train(num_tasks=5)   # returns at once
        job.result()               # {"final_theta": 0.5}
        ```
    """
    # Everything given, by its parameter's name: the options are checked here, once, at decoration.
    options = JobOptions.resolve(**locals())

    def decorate(func: Callable[..., Any]) -> Callable[..., HybridJob]:
        @functools.wraps(func)
        def job_wrapper(*args: Any, **kwargs: Any) -> HybridJob:
            backend = options.job_backend()
            backend.check_dependencies(options.requirements)
            with packaged(func, args, kwargs, options, options.budget(backend)) as spec:
                job = _submit(spec, backend, options)
            if options.wait_until_complete:
                if in_flow_run():
                    # As Braket's decorator does, the handle comes back however the job ended; its
                    # `result()` raises. The wait logs the failure at ERROR.
                    job.follow_replacement(wait_for_job(job, raise_on_failure=False))
                else:
                    job.wait_until_complete()
            return job

        return job_wrapper

    return decorate


def _submit(spec: JobSpec, backend: JobBackend, options: JobOptions) -> HybridJob:
    """Creates the job: outside a flow at once, inside one as a task run that a retry cannot repeat."""
    if not in_flow_run():
        return HybridJob(backend.create_job(spec), backend)
    window = None
    if options.wait_for_execution_window:
        window = options.device_block or BraketDevice(device_arn=options.device)
    submit = run_job_exclusively if options.device_concurrency_limit else submit_job
    return submit.with_options(task_run_name=f"submit-{spec.job_name}")(
        spec, backend, window, options.max_window_wait_seconds)


def _instance_usd_per_hour(backend: JobBackend, config: InstanceConfig) -> float:
    """What the job's instances cost an hour: nothing on the embedded engine."""
    if not backend.bills_instances:
        return 0.0
    try:
        return PriceTable.default().job_instance_cost(config.instanceType, 3600.0, config.instanceCount)
    except UnknownPriceError as error:
        raise ValueError(f"max_cost_usd needs the price of the job's instance: {error.args[0]} Add it to a price "
                         "table of your own ($PREFECT_BRAKET_PRICES), or leave max_cost_usd out.") from None


def _requirement_lines(dependencies: str | Path | list[str] | None) -> list[str]:
    if dependencies is None:
        return []
    if isinstance(dependencies, (list, tuple)):
        return [str(d) for d in dependencies]
    path = Path(dependencies)
    if not path.is_file():
        raise FileNotFoundError(
            f"dependencies {str(path)!r} is not a requirements file (or pass a list of requirements).")
    return path.read_text().splitlines()
