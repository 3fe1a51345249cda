"""A decorated function and its arguments, packed as a hybrid job's source: what travels, and what not.

The call is pickled (cloudpickle, with the in-job runtime and the function's own module by value)
into `function.pkl`, beside an `entry_point.py` that Braket's container and the embedded engine
both run and a `requirements.txt` pinning the cloudpickle that pickled it. The pickle is the
job's code, stored in S3 on Amazon Braket, so no credentials go into it (`_JobPickler`).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import io
import os
import re
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

import cloudpickle

from prefect_braket import jobs as jobs_module
from prefect_braket.core.errors import PrefectBraketError
from prefect_braket.core.spec import (
    JobSpec,
    default_job_name,
    hyperparameters_from_call,
)
from prefect_braket.jobs.entry import run_decorated_function

if TYPE_CHECKING:
    from prefect_braket.orchestration.decorator import JobOptions

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

class CredentialsInJobError(PrefectBraketError, TypeError):
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


@contextlib.contextmanager
def packaged(func: Callable[..., Any], args: tuple, kwargs: dict, options: JobOptions,
             budget: dict[str, float] | None) -> Iterator[JobSpec]:
    """The job for one call of `func`, its source in a temporary directory while the context lasts."""
    hyperparameters = hyperparameters_from_call(func, tuple(map(_shown, args)),
                                                {name: _shown(value) for name, value in kwargs.items()})
    entry = functools.partial(run_decorated_function, functools.partial(func, *args, **kwargs), options.local_paths,
                              options.data_format.value, budget)
    payload = _pickle_call(func, _modules_by_value(func, options.include_modules), entry)
    entry_function = re.sub(r"\W", "_", func.__name__)  # a lambda's name is "<lambda>"
    with tempfile.TemporaryDirectory(prefix="prefect-braket-") as tmp:
        source = Path(tmp) / f"decorator_job_{os.urandom(4).hex()}"
        source.mkdir()
        (source / "function.pkl").write_bytes(payload)
        (source / "entry_point.py").write_text(ENTRY_POINT_TEMPLATE.format(function=entry_function))
        pins = [f"cloudpickle=={cloudpickle.__version__}"]  # the job unpickles with the cloudpickle that pickled it
        (source / "requirements.txt").write_text("\n".join([*options.requirements, *pins]) + "\n")
        yield options.spec(
            job_name=options.job_name or default_job_name(func), source_module=source,
            entry_point=f"{source.name}.entry_point:{entry_function}", hyperparameters=hyperparameters,
        )
