"""Which backend runs a device's jobs, or holds a job: names mapped to dotted paths.

As fsspec chooses a file system by protocol name, `backend_for` chooses a `JobBackend` by name
("local", "aws") and imports it only when asked, so that no backend imports the code that
chooses among them. `register_backend` adds one.
"""

from __future__ import annotations

import importlib
from typing import Any

from prefect_braket.backends.base import JobBackend
from prefect_braket.core.arns import device_region, resource_region

BACKENDS = {
    "local": "prefect_braket.backends.local.engine:LocalEngine",
    "aws": "prefect_braket.backends.aws.backend:AwsBackend",
}


def register_backend(name: str, path: str) -> None:
    """Makes `backend_for(..., backend=name)` build the class at `path` ("package.module:Class")."""
    BACKENDS[name] = path


def backend_name(device_or_arn: str, backend: str | None = None, local: bool = False) -> str:
    """The backend a device's jobs run on, or a job's ARN belongs to: `backend` if given, the
    embedded engine for `local=True` (Braket's local mode) and `local:` ARNs, else Amazon Braket."""
    if backend is not None:
        if backend not in BACKENDS:
            raise ValueError(f"Unknown backend {backend!r}: use one of {', '.join(sorted(BACKENDS))} "
                             "('local' is the embedded engine, 'aws' Amazon Braket).")
        return backend
    return "local" if local or device_or_arn.startswith("local:") else "aws"


def backend_for(device_or_arn: str, backend: str | None = None, **options: Any) -> JobBackend:
    """The backend that runs jobs for a device, or that holds the job with this ARN.

    Args:
        device_or_arn: A device ARN ("local:braket/braket_sv", an AWS ARN) or a job ARN.
        backend: A registered name ("local", "aws"); by default from the ARN (`backend_name`).
        options: Passed to the backend (the engine's `root`, an AWS `region`, ...). An AWS backend
            is made in the region of the ARN unless `region` is given.
    """
    name = backend_name(device_or_arn, backend)
    module, _, cls = BACKENDS[name].partition(":")
    backend_class = getattr(importlib.import_module(module), cls)
    if name == "aws" and "region" not in options:
        options["region"] = _region_of(device_or_arn)
    return backend_class(**options)


def _region_of(arn: str) -> str | None:
    try:
        return device_region(arn)
    except ValueError:
        return resource_region(arn)
