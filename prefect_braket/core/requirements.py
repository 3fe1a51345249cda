"""A job's `requirements.txt` against an environment: what is missing, named, before a job is started.
"""

from __future__ import annotations

from importlib import metadata
from typing import Iterable


def missing_requirements(lines: Iterable[str]) -> list[str]:
    """The requirements among `lines` this environment does not satisfy, each with what it has."""
    from packaging.requirements import InvalidRequirement, Requirement

    missing = []
    for raw in lines:
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        try:
            requirement = Requirement(line)
        except InvalidRequirement as error:
            missing.append(f"{line} (not a valid requirement: {error})")
            continue
        if requirement.marker and not requirement.marker.evaluate():
            continue
        try:
            installed = metadata.version(requirement.name)
        except metadata.PackageNotFoundError:
            missing.append(f"{line} (not installed)")
            continue
        if requirement.specifier and not requirement.specifier.contains(installed, prereleases=True):
            missing.append(f"{line} (installed: {installed})")
    return missing


def check_requirements(lines: Iterable[str]) -> None:
    """Raises ModuleNotFoundError naming every requirement this environment lacks."""
    missing = missing_requirements(lines)
    if missing:
        raise ModuleNotFoundError(
            "The job's dependencies are not installed here: " + "; ".join(missing)
            + ". The embedded engine runs jobs in this Python environment: install them into it "
            "(pip install ...), or run the job on Amazon Braket, whose container installs them."
        )
