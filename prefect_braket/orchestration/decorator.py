"""`hybrid_job`: Braket's decorator, running on the embedded engine or on Amazon Braket.

Code written for `braket.jobs.hybrid_job` adopts it by changing its import. The decorated
function is pickled with its arguments into an entry point that Braket's container and the
embedded engine both run; calling it submits a job and returns a `HybridJob` at once. Inside a
Prefect flow the submission is a task run, retried without ever creating a second job.
"""

from __future__ import annotations

import functools
import importlib
import io
import os
import re
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterable

import cloudpickle

from prefect_braket import jobs as jobs_module
from prefect_braket.backends.base import JobBackend
from prefect_braket.backends.registry import backend_for
from prefect_braket.core.arns import check_device_arn
from prefect_braket.core.requirements import check_requirements
from prefect_braket.core.spec import (
    RESERVED_CHANNEL,
    CheckpointConfig,
    InstanceConfig,
    JobSpec,
    OutputDataConfig,
    StoppingCondition,
    default_job_name,
    hyperparameters_from_call,
    validate_job_name,
)
from prefect_braket.jobs import PersistedJobDataFormat
from prefect_braket.jobs.entry import run_decorated_function
from prefect_braket.orchestration.context import in_flow_run
from prefect_braket.orchestration.handle import HybridJob
from prefect_braket.quantum.cost import PriceTable, UnknownPriceError

ENTRY_POINT_TEMPLATE = '''"""Runs {function} as a hybrid job; written by prefect_braket.hybrid_job."""
from pathlib import Path

import cloudpickle


def {function}():
    return cloudpickle.loads(Path(__file__).with_name("function.pkl").read_bytes())()
'''


def _modules_by_value(func: Callable[..., Any], include_modules: Iterable[str | ModuleType]) -> list[ModuleType]:
    """The modules whose code travels inside the pickle rather than by import."""
    modules = [importlib.import_module(m) if isinstance(m, str) else m for m in include_modules]
    own = sys.modules.get(func.__module__)
    own_file = getattr(own, "__file__", None) or ""
    # The function's own module is user code the job may not be able to import; installed
    # packages (site-packages) are importable where the job runs.
    if own is not None and func.__module__ != "__main__" and own_file and not any(
        part in ("site-packages", "dist-packages") for part in Path(own_file).parts
    ):
        modules.append(own)
    return modules


class CredentialsInJobError(TypeError):
    """A secret would travel inside a job's code, where whoever reads the job's source can read it."""


def _credential_kind(obj: Any) -> str | None:
    """"aws" for prefect-aws credentials, "secret" for other secrets, None for anything else.

    Only modules already imported can have made `obj`, so nothing is imported to ask.
    """
    kinds = (("prefect_aws.credentials", "AwsCredentials", "aws"), ("pydantic", "SecretStr", "secret"),
             ("pydantic", "SecretBytes", "secret"), ("botocore.credentials", "Credentials", "secret"),
             ("botocore.credentials", "ReadOnlyCredentials", "secret"), ("boto3.session", "Session", "secret"))
    for module, name, kind in kinds:
        cls = getattr(sys.modules.get(module), name, None)
        if cls is not None and isinstance(obj, cls):
            return kind
    return None


class _JobPickler(cloudpickle.Pickler):
    """Pickles a job's call with no credentials in it: the pickle is the job's source, stored in S3.

    prefect-aws `AwsCredentials` (inside a `BraketDevice` argument, say) arrive in the job as None,
    so the device uses the job's own credentials: its execution role on Amazon Braket, this
    environment's on the embedded engine. Other secrets are refused.
    """

    def reducer_override(self, obj: Any) -> Any:
        kind = _credential_kind(obj)
        if kind == "aws":
            return type(None), ()
        if kind:
            raise CredentialsInJobError(
                f"A {type(obj).__name__} would travel inside the job's code, readable by anyone who can read its "
                "source archive. Pass no secrets to a hybrid job: give it a role (role_arn=) or read the secret "
                "inside the job (AWS Secrets Manager, for example)."
            )
        return super().reducer_override(obj)


def _pickle_call(func: Callable[..., Any], by_value: list[ModuleType], entry: Callable[[], Any]) -> bytes:
    registered = []
    try:
        for module in [jobs_module, *by_value]:
            if module.__name__ not in cloudpickle.list_registry_pickle_by_value():
                cloudpickle.register_pickle_by_value(module)
                registered.append(module)
        with io.BytesIO() as buffer:
            _JobPickler(buffer).dump(entry)
            return buffer.getvalue()
    except CredentialsInJobError:
        raise
    except Exception as error:
        raise RuntimeError(
            f"Serialization failed for hybrid job {func.__name__}: {type(error).__name__}: {error}. "
            "The function and its arguments are pickled with cloudpickle: create objects such as "
            "locks, clients, sessions and open files inside the function instead of capturing them."
        ) from error
    finally:
        for module in registered:
            cloudpickle.unregister_pickle_by_value(module)


def _shown(value: Any) -> Any:
    """An argument as the job's hyperparameters show it: credentials by their type only."""
    return f"<{type(value).__name__}: not shipped>" if _credential_kind(value) else value


def _instance_usd_per_hour(backend: JobBackend, config: InstanceConfig) -> float:
    """What the job's instances cost an hour: nothing on the embedded engine."""
    if getattr(backend, "name", None) == "local":
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
        raise FileNotFoundError(f"dependencies {str(path)!r} is not a requirements file (or pass a list of requirements).")
    return path.read_text().splitlines()


def hybrid_job(
    *,
    device: Any,
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
    device_block = device if hasattr(device, "device_arn") else None
    # Refused here, at decoration: a job for a device that does not exist would run (locally) or
    # upload its code (on AWS) before anything noticed.
    device = check_device_arn(device_block.device_arn if device_block is not None else device)
    if job_name is not None:
        validate_job_name(job_name)
    if max_cost_usd is not None and not (isinstance(max_cost_usd, (int, float)) and max_cost_usd >= 0):
        raise ValueError(f"max_cost_usd={max_cost_usd!r} must be a number of US dollars, at least 0.")
    fmt = PersistedJobDataFormat.parse(data_format)
    requirements = _requirement_lines(dependencies)
    given_backend = None if backend is None or isinstance(backend, str) else backend
    if (given_backend is None and device_block is not None and not device_block.is_local and not local
            and backend in (None, "aws")):
        given_backend = device_block.backend()  # the block's credentials and region
    backend_name = ("local" if local else None) if backend is None else backend if given_backend is None else None
    if given_backend is None:
        backend_for(device, backend_name)  # a wrong choice fails here, at decoration
    if isinstance(include_modules, (str, ModuleType)):
        include_modules = [include_modules]
    channels = {} if input_data is None else input_data if isinstance(input_data, dict) else {"input": input_data}
    if RESERVED_CHANNEL in channels:
        raise ValueError(f"Input channel name {RESERVED_CHANNEL!r} is reserved; choose another channel name.")
    local_paths = {c: str(p) for c, p in channels.items() if not str(p).startswith("s3://")}

    def decorate(func: Callable[..., Any]) -> Callable[..., HybridJob]:
        by_value = _modules_by_value(func, include_modules or [])

        @functools.wraps(func)
        def job_wrapper(*args: Any, **kwargs: Any) -> HybridJob:
            # Resolved per call: the engine's home is read when the job is submitted.
            job_backend = given_backend or backend_for(device, backend_name)
            if requirements and getattr(job_backend, "name", None) == "local":
                check_requirements(requirements)
            hyperparameters = hyperparameters_from_call(func, tuple(map(_shown, args)),
                                                        {name: _shown(value) for name, value in kwargs.items()})
            budget = None if max_cost_usd is None else {
                "max_cost_usd": max_cost_usd,
                "instance_usd_per_hour": _instance_usd_per_hour(job_backend, instance_config or InstanceConfig()),
            }
            entry = functools.partial(run_decorated_function, functools.partial(func, *args, **kwargs), local_paths,
                                      fmt.value, budget)
            payload = _pickle_call(func, by_value, entry)
            entry_function = re.sub(r"\W", "_", func.__name__)  # a lambda's name is "<lambda>"
            with tempfile.TemporaryDirectory(prefix="prefect-braket-") as tmp:
                source = Path(tmp) / f"decorator_job_{os.urandom(4).hex()}"
                source.mkdir()
                (source / "function.pkl").write_bytes(payload)
                (source / "entry_point.py").write_text(
                    ENTRY_POINT_TEMPLATE.format(function=entry_function)
                )
                # The job unpickles with the cloudpickle that pickled it.
                pins = [f"cloudpickle=={cloudpickle.__version__}"]
                (source / "requirements.txt").write_text("\n".join([*requirements, *pins]) + "\n")
                spec = JobSpec(
                    job_name=job_name or default_job_name(func),
                    device=device,
                    source_module=source,
                    entry_point=f"{source.name}.entry_point:{entry_function}",
                    hyperparameters=hyperparameters,
                    input_data={c: str(p) for c, p in channels.items()},
                    instance_config=instance_config or InstanceConfig(),
                    stopping_condition=stopping_condition or StoppingCondition(),
                    checkpoint_config=checkpoint_config or CheckpointConfig(),
                    output_data_config=output_data_config or OutputDataConfig(),
                    copy_checkpoints_from_job=copy_checkpoints_from_job,
                    image_uri=image_uri,
                    role_arn=role_arn,
                    reservation_arn=reservation_arn,
                    tags=dict(tags or {}),
                    python_version=f"{sys.version_info.major}.{sys.version_info.minor}",
                )
                if in_flow_run():
                    from prefect_braket.orchestration.tasks import (
                        run_job_exclusively,
                        submit_job,
                    )

                    window = None
                    if wait_for_execution_window:
                        from prefect_braket.orchestration.blocks import BraketDevice

                        window = device_block or BraketDevice(device_arn=device)
                    submit = run_job_exclusively if device_concurrency_limit else submit_job
                    job = submit.with_options(task_run_name=f"submit-{spec.job_name}")(
                        spec, job_backend, window, max_window_wait_seconds
                    )
                else:
                    job = HybridJob(job_backend.create_job(spec), job_backend)
            if wait_until_complete:
                if in_flow_run():
                    from prefect_braket.orchestration.tasks import wait_for_job

                    job.follow_replacement(wait_for_job(job))
                else:
                    job.wait_until_complete()
            return job

        return job_wrapper

    return decorate
