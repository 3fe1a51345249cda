"""Names a package offers at its top but imports on first use.

`prefect_braket` and `prefect_braket.variational` offer their public names this way, so that a
job process importing `prefect_braket.jobs`, or a hybrid job running `variational.in_job`, does
not pay for importing Prefect.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any, Callable


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """`__getattr__` and `__dir__` for `package`, whose name `n` lives in module `exports[n]`
    (absolute, or relative to the package when it starts with a dot)."""
    namespace = sys.modules[package].__dict__

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__
