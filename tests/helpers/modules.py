"""User code as users have it: a source file of its own, imported as a module."""

import importlib.util
import sys
import uuid


def import_source(source: str, stem: str, directory, monkeypatch):
    """Writes `source` to `{stem}_{random}.py` in `directory` and imports it as that module (in
    `sys.modules` for the test's duration, so cloudpickle can register it to travel by value)."""
    name = f"{stem}_{uuid.uuid4().hex[:8]}"
    path = directory / f"{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)
    spec.loader.exec_module(module)
    return module
