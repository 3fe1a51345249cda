"""The boot of a job's process: what Braket's job container does around the entry point.

It unpacks the source archive (from `$PREFECT_BRAKET_SOURCE_ARCHIVE`, on disk: the job's
`AMZN_BRAKET_SCRIPT_S3_URI` is where Braket's container would have downloaded it from), checks
the job's `requirements.txt` files against this environment, imports `module[:function]`, binds
the hyperparameters file to the function's typed arguments, and runs it with the extracted
source as working directory. An exception is written, as "<Type>: <message>", to the failure
file that becomes the job's `failureReason`; its traceback goes to the job's log. A module this
Python lacks is named with the fix, since the job's code may run in another Python than the one
that submitted it (the local endpoint's, say).

The supervisor runs it as `python -m prefect_braket.backends.local.container`.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import runpy
import sys
import traceback
import typing
from pathlib import Path
from typing import Any

from prefect_braket.backends.local.processes import SOURCE_VARIABLE
from prefect_braket.core.archive import safe_extract
from prefect_braket.core.requirements import check_requirements
from prefect_braket.jobs.environment import failure_file


def _bind_hyperparameters(function: Any) -> dict[str, Any]:
    """Braket's binding: the HP file's values, converted by the function's annotations, if they fit."""
    path = os.environ.get("AMZN_BRAKET_HP_FILE")
    if not path or not Path(path).exists():
        return {}
    values = json.loads(Path(path).read_text())
    signature = inspect.signature(function)
    try:
        signature.bind(**values)
    except TypeError:
        return {}
    try:
        hints = typing.get_type_hints(function)  # resolves `from __future__ import annotations`
    except Exception:
        hints = {}
    converted = {}
    for name, value in values.items():
        annotation = hints.get(name, str)
        if not callable(annotation) or getattr(annotation, "__module__", "") == "typing":
            annotation = str
        try:
            converted[name] = annotation(value) if annotation is not bool else value.lower() in ("1", "true", "yes")
        except (TypeError, ValueError) as error:
            raise TypeError(f"Hyperparameter {name}={value!r} does not convert to {annotation}: {error}") from None
    return converted


def run() -> Any:
    """Sets the job up and runs its entry point; returns what the entry point returned."""
    instance = Path(os.environ["PREFECT_BRAKET_INSTANCE_DIR"])
    failure = failure_file()
    failure.parent.mkdir(parents=True, exist_ok=True)
    try:
        code_dir = safe_extract(Path(os.environ[SOURCE_VARIABLE]), instance / "code" / "customer_code" / "extracted")
        for requirements in sorted(code_dir.rglob("requirements.txt")):
            check_requirements(requirements.read_text().splitlines())
        sys.path.append(str(code_dir))
        os.chdir(code_dir)
        module_name, _, function_name = os.environ["AMZN_BRAKET_SCRIPT_ENTRY_POINT"].partition(":")
        if function_name:
            function = getattr(importlib.import_module(module_name), function_name)
            arguments = _bind_hyperparameters(function)
        else:
            function, arguments = runpy.run_module, {"mod_name": module_name, "run_name": "__main__"}
    except BaseException as error:
        failure.write_text(f"ClientError: Setting up the job failed: {_described(error)}")
        raise
    try:
        return function(**arguments)
    except SystemExit as error:
        if error.code not in (None, 0):  # sys.exit(0) at the end of a script is success
            failure.write_text(f"AlgorithmError: SystemExit: {error.code}")
        raise
    except BaseException as error:
        # Braket's categories: the job's own code fails as "AlgorithmError", which is never taken
        # for a lost instance ("InternalServerError"), whatever the exception is called.
        failure.write_text(f"AlgorithmError: {_described(error)}")
        raise


def _described(error: BaseException) -> str:
    """"<Type>: <message>", and for a module this Python lacks, which module and how to give it one."""
    described = f"{type(error).__name__}: {error}"
    if not isinstance(error, ModuleNotFoundError) or not error.name:
        return described
    module = error.name.split(".")[0]
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    return (f"{described}. The job's code needs module {module!r}, which the Python running the job ({sys.executable}, "
            f"{version}) does not have: install it there ({sys.executable} -m pip install <its package>), or name "
            "its package in hybrid_job(dependencies=[...]), which Braket's container installs and the embedded "
            "engine checks for before it starts the job.")


if __name__ == "__main__":
    try:
        run()
    except SystemExit:
        raise
    except BaseException:
        traceback.print_exc()
        sys.exit(1)
