"""What a hybrid job is made of, as both backends receive it: Braket's CreateJob, checked early.

`JobSpec` carries everything a backend needs to create a job, with Braket's limits enforced
here, before anything is uploaded or started, and with errors that name the value and the fix.
The configuration classes keep Braket's names (`InstanceConfig(instanceType=…)`), so code
written against `braket.jobs.config` reads the same.
"""

from __future__ import annotations

import inspect
import re
import secrets
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from prefect_braket.core.arns import check_device_arn, is_s3_uri

MAX_JOB_NAME_LENGTH = 50
JOB_NAME = re.compile(r"^(?!-)[A-Za-z0-9-]{1,50}(?<!-)$")
CHANNEL_NAME = re.compile(r"^[A-Za-z0-9.\-_]{1,64}$")
ENTRY_POINT = re.compile(r"^[A-Za-z_][\w.]*(:[A-Za-z_]\w*)?$")
MAX_HYPERPARAMETER_LENGTH = 2500
MAX_HYPERPARAMETERS = 100
MAX_CHANNELS = 20
MAX_RUNTIME_SECONDS = 432000
DEFAULT_CHECKPOINT_PATH = "/opt/jobs/checkpoints"
RESERVED_CHANNEL = "_braket_job_decorator_inner_function_source"


@dataclass(frozen=True)
class InstanceConfig:
    """The classical instance of a job on Amazon Braket (ignored by the embedded engine)."""

    instanceType: str = "ml.m5.large"
    volumeSizeInGb: int = 30
    instanceCount: int = 1


@dataclass(frozen=True)
class StoppingCondition:
    """When a job is stopped; the embedded engine enforces the maximum runtime too."""

    maxRuntimeInSeconds: int = MAX_RUNTIME_SECONDS


@dataclass(frozen=True)
class CheckpointConfig:
    """Where checkpoints live in the job (`localPath`) and in S3 (`s3Uri`, default by job)."""

    localPath: str = DEFAULT_CHECKPOINT_PATH
    s3Uri: str | None = None


@dataclass(frozen=True)
class OutputDataConfig:
    """Where the job's `model.tar.gz` goes in S3 (default by job)."""

    s3Path: str | None = None
    kmsKeyId: str | None = None


def validate_job_name(name: str) -> str:
    """Returns `name` if Braket accepts it, else raises ValueError saying why and what would do."""
    if not isinstance(name, str) or not JOB_NAME.match(name):
        suggestion = re.sub(r"[^A-Za-z0-9-]+", "-", str(name)).strip("-")[:50].strip("-") or "my-job"
        raise ValueError(
            f"Invalid job name {name!r}: Braket job names are 1-50 letters, digits and hyphens, "
            f"and neither start nor end with a hyphen. Try {suggestion!r}."
        )
    return name


_stamp_lock = threading.Lock()
_last_stamp = 0


def _unique_stamp() -> int:
    """Milliseconds since the epoch, never the same twice in this process."""
    global _last_stamp
    with _stamp_lock:
        _last_stamp = max(int(time.time() * 1000), _last_stamp + 1)
        return _last_stamp


def default_job_name(stem: str | Callable[..., Any]) -> str:
    """Braket's default name, `{stem}-{milliseconds}`, made unique: `train-1764582000000-3fa2`.

    Braket's SDK names a job after its function and the millisecond: jobs submitted together
    then share names (20 submitted at once got 14-17 names), and so do their result folders. The
    millisecond never repeats within a process here, and four random hex digits keep processes apart.
    """
    text = stem if isinstance(stem, str) else stem.__name__
    suffix = f"-{_unique_stamp()}-{secrets.token_hex(2)}"
    stem = re.sub(r"[^A-Za-z0-9-]+", "-", text.replace("_", "-")).strip("-") or "job"
    limit = MAX_JOB_NAME_LENGTH - len(suffix)
    if len(stem) > limit:
        warnings.warn(f"Job name {stem!r} is cut to {limit} characters to fit Braket's 50.", stacklevel=3)
        stem = stem[:limit].rstrip("-")
    return stem + suffix


def sanitize_hyperparameter(value: Any) -> str:
    """Braket's display form of an argument: some shell characters swapped, at most 2,500 characters."""
    text = str(value)
    for old, new in (("\n", " "), ("$", "?"), ("(", "{"), ("&", "+"), (")", "}"), ("`", "'")):
        text = text.replace(old, new)
    if len(text) > MAX_HYPERPARAMETER_LENGTH:
        text = text[: MAX_HYPERPARAMETER_LENGTH - 23] + "..." + text[-20:]
    return text


def hyperparameters_from_call(func: Callable[..., Any], args: tuple, kwargs: dict) -> dict[str, str]:
    """The call's arguments, defaults included, as Braket's decorator records them."""
    bound = inspect.signature(func).bind(*args, **kwargs)
    bound.apply_defaults()
    recorded: dict[str, str] = {}
    for name, param in inspect.signature(func).parameters.items():
        if name in bound.arguments and bound.arguments[name] == "":
            continue  # Braket refuses empty values; these are for display, the call travels pickled
        if name not in bound.arguments:
            continue
        if param.kind in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY):
            recorded[name] = sanitize_hyperparameter(bound.arguments[name])
        elif param.kind is param.VAR_KEYWORD:
            recorded.update({k: sanitize_hyperparameter(v) for k, v in bound.arguments[name].items()})
        else:
            warnings.warn(
                f"Argument {name!r} of {func.__name__} is positional-only or *args: it is passed to the "
                "job but not shown among its hyperparameters.",
                stacklevel=3,
            )
    return recorded


# What a shown hyperparameter must not carry. A credential object given to a decorated call is
# shown by its type only (`packaging._shown`), a device's by its profile (`blocks._Hidden`); these
# catch credentials given as text: by the hyperparameter's name, a secret-named field inside the
# value, an AWS access key id, or a run of 40 key characters (an AWS secret access key's shape).
SECRET_NAME = re.compile(r"key|secret|token|passw|credential|auth", re.IGNORECASE)
SECRET_TEXT = re.compile(r"(?:key|secret|token|passw)\w*['\"]?\s*[:=]\s*['\"]?\w"
                         r"|(?:AKIA|ASIA)[A-Z0-9]{16}"
                         r"|(?<![A-Za-z0-9/+=])[A-Za-z0-9/+=]{40}(?![A-Za-z0-9/+=])", re.IGNORECASE)
HIDDEN_HYPERPARAMETER = "hidden (it may be a credential)"


def shown_hyperparameters(hyperparameters: dict[str, str]) -> dict[str, str]:
    """Hyperparameters as a page (an artifact, a log) may show them: any that may be a credential hidden.

    Example:
        ```python
        shown_hyperparameters({"lr": "0.1", "api_key": "sk-1", "config": "{'token': 'abc'}"})
        # {"lr": "0.1", "api_key": "hidden (it may be a credential)", "config": "hidden (...)"}
        ```
    """
    return {name: HIDDEN_HYPERPARAMETER if SECRET_NAME.search(name) or SECRET_TEXT.search(str(value)) else str(value)
            for name, value in hyperparameters.items()}


@dataclass(frozen=True)
class JobSpec:
    """One hybrid job to create, in the terms of Braket's CreateJob request.

    Args:
        job_name: Braket's rules: 1-50 letters, digits and hyphens.
        device: The device ARN whose tasks get the job's priority, or "local:<provider>/<name>".
        source_module: A local file or directory (packed and shipped), or a `.tar.gz`.
        entry_point: "module" or "module:function" inside the source.
        hyperparameters: String values handed to the entry point's typed arguments.
        input_data: Channel name to a local path (copied in) or an S3 URI.
    """

    job_name: str
    device: str
    source_module: Path
    entry_point: str
    hyperparameters: dict[str, str] = field(default_factory=dict)
    input_data: dict[str, str] = field(default_factory=dict)
    instance_config: InstanceConfig = field(default_factory=InstanceConfig)
    stopping_condition: StoppingCondition = field(default_factory=StoppingCondition)
    checkpoint_config: CheckpointConfig = field(default_factory=CheckpointConfig)
    output_data_config: OutputDataConfig = field(default_factory=OutputDataConfig)
    copy_checkpoints_from_job: str | None = None
    image_uri: str | None = None
    role_arn: str | None = None
    reservation_arn: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    python_version: str | None = None  # "3.11" when the code is a pickled function, which needs the same Python

    def __post_init__(self) -> None:
        validate_job_name(self.job_name)
        check_device_arn(self.device)
        self._check_hyperparameters()
        self._check_input_data()
        self._check_source()
        runtime = self.stopping_condition.maxRuntimeInSeconds
        if not (isinstance(runtime, int) and 1 <= runtime <= MAX_RUNTIME_SECONDS):
            raise ValueError(f"maxRuntimeInSeconds {runtime!r} must be a whole number from 1 to {MAX_RUNTIME_SECONDS}.")

    def _check_hyperparameters(self) -> None:
        if len(self.hyperparameters) > MAX_HYPERPARAMETERS:
            raise ValueError(f"{len(self.hyperparameters)} hyperparameters given; Braket takes at most 100.")
        for key, value in self.hyperparameters.items():
            if not isinstance(value, str):
                raise TypeError(f"Hyperparameter {key!r} is {value!r}: values are strings (str(value)).")
            if not 1 <= len(key) <= 256:
                raise ValueError(f"Hyperparameter name {key[:40]!r}… must be 1-256 characters.")
            if not value:
                raise ValueError(f"Hyperparameter {key!r} is empty; Braket takes values of 1 to 2500 characters.")
            if len(value) > MAX_HYPERPARAMETER_LENGTH:
                raise ValueError(
                    f"Hyperparameter {key!r} is {len(value)} characters long; Braket takes at most "
                    f"{MAX_HYPERPARAMETER_LENGTH}. Pass large values as input_data or in the source instead."
                )

    def _check_input_data(self) -> None:
        if len(self.input_data) > MAX_CHANNELS:
            raise ValueError(f"{len(self.input_data)} input channels given; Braket takes at most {MAX_CHANNELS}.")
        for channel, location in self.input_data.items():
            if not CHANNEL_NAME.match(channel):
                raise ValueError(f"Input channel name {channel!r} must be 1-64 of [A-Za-z0-9.-_].")
            if not is_s3_uri(location) and not Path(location).exists():
                raise FileNotFoundError(f"Input data for channel {channel!r} not found: {location}")

    def _check_source(self) -> None:
        if not ENTRY_POINT.match(self.entry_point):
            raise ValueError(f"Entry point {self.entry_point!r} must look like 'package.module' or 'module:function'.")
        source = Path(self.source_module)
        if not source.exists():
            raise FileNotFoundError(f"Source module {source} does not exist.")
        if source.name.endswith(".tar.gz"):
            return
        module = self.entry_point.split(":")[0]
        # The archive holds the source under its base name, so the module path starts from there.
        root = source.parent
        parts = module.split(".")
        candidates = [root.joinpath(*parts).with_suffix(".py"), root.joinpath(*parts, "__init__.py")]
        if not any(c.is_file() and c.resolve().is_relative_to(source.resolve()) for c in candidates):
            raise ValueError(
                f"Entry point module {module!r} is not in the source {source}: the source is shipped as "
                f"'{source.name}', so the entry point starts with '{source.stem}'."
            )
