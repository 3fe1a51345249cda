"""The layering rules that import-linter cannot say: the in-job runtime runs where nothing but
Python's standard library is installed."""

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
