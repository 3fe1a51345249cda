"""The layering rules that import-linter cannot say: the in-job runtime runs where nothing but
Python's standard library is installed, and the package never imports Braket's SDK (import-linter
sees only the top-level `braket`, which the SDK shares with the simulator and the schemas)."""

import importlib.metadata
import re
import sys

import grimp


def test_the_in_job_runtime_imports_only_the_standard_library_and_itself():
    graph = grimp.build_graph("prefect_braket", include_external_packages=True, exclude_type_checking_imports=True)
    runtime = {"prefect_braket.jobs", *graph.find_descendants("prefect_braket.jobs")}
    imported = {target for module in runtime for target in graph.find_modules_directly_imported_by(module)}
    outside = {name for name in imported - runtime if name.split(".")[0] not in sys.stdlib_module_names}
    assert outside == set(), f"the in-job runtime imports {sorted(outside)}"
    assert len(runtime) >= 5  # the package and its modules were read


def test_a_module_outside_the_standard_library_would_be_caught(tmp_path, monkeypatch):
    package = tmp_path / "probe_pkg"
    (package / "jobs").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "jobs" / "__init__.py").write_text("import json\nimport numpy\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    graph = grimp.build_graph("probe_pkg", include_external_packages=True)
    imported = graph.find_modules_directly_imported_by("probe_pkg.jobs")
    assert {name for name in imported if name.split(".")[0] not in sys.stdlib_module_names} == {"numpy"}


# The distributions prefect-braket depends on that put packages under `braket`.
OWN_BRAKET_DISTRIBUTIONS = ("amazon-braket-default-simulator", "amazon-braket-schemas")
BRAKET_IMPORT = re.compile(r"^\s*(?:from|import)\s+braket\.(\w+)")


def _braket_packages_imported(graph: grimp.ImportGraph, package: str) -> dict[str, set[str]]:
    """`braket.<name>` for each name a module of `package` imports, by module; a bare `braket`
    import shows as `braket`, which no distribution ships, so the check refuses it."""
    modules = {package, *graph.find_descendants(package)}
    imported: dict[str, set[str]] = {}
    for module in modules & graph.find_modules_that_directly_import("braket"):
        for detail in graph.get_import_details(importer=module, imported="braket"):
            match = BRAKET_IMPORT.match(detail["line_contents"])
            imported.setdefault(module, set()).add(f"braket.{match.group(1)}" if match else "braket")
    return imported


def _packages_shipped_by(distribution: str) -> set[str]:
    return {f"braket.{f.parts[1]}" for f in importlib.metadata.distribution(distribution).files or []
            if f.parts[0] == "braket" and len(f.parts) > 2}


def test_the_package_imports_braket_only_from_its_own_dependencies_never_the_sdk():
    allowed = set().union(*map(_packages_shipped_by, OWN_BRAKET_DISTRIBUTIONS))
    assert {"braket.default_simulator", "braket.ir", "braket.task_result"} <= allowed
    assert not allowed & {"braket.aws", "braket.circuits", "braket.devices", "braket.jobs", "braket.tasks"}
    graph = grimp.build_graph("prefect_braket", include_external_packages=True, exclude_type_checking_imports=True)
    imported = _braket_packages_imported(graph, "prefect_braket")
    outside = {module: sorted(names - allowed) for module, names in imported.items() if names - allowed}
    assert outside == {}, (f"these modules import Braket packages that are not prefect-braket's dependencies "
                           f"(Braket's SDK is the user's to install): {outside}")
    assert len(imported) >= 2  # the simulators and the programs were read


def test_an_import_of_braket_s_sdk_would_be_caught(tmp_path, monkeypatch):
    package = tmp_path / "probe_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("import braket.ir\n\ndef f():\n    from braket.circuits import Circuit\n"
                                         "    from braket import aws\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    graph = grimp.build_graph("probe_pkg", include_external_packages=True)
    assert _braket_packages_imported(graph, "probe_pkg") == {"probe_pkg": {"braket.ir", "braket.circuits", "braket"}}
