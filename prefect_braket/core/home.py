"""The package's own directory on this machine: `$PREFECT_BRAKET_HOME`, else `~/.prefect_braket`.

The embedded engine keeps its jobs there, downloaded results land there unless told otherwise,
and saved device blocks keep their spending there. It holds job tokens and results, so it is
made readable by its owner only. Standard library only: job processes import it too.
"""

from __future__ import annotations

import os
from pathlib import Path

HOME_VARIABLE = "PREFECT_BRAKET_HOME"


def package_home() -> Path:
    """`$PREFECT_BRAKET_HOME`, else `~/.prefect_braket` (not created here)."""
    return Path(os.environ.get(HOME_VARIABLE) or Path.home() / ".prefect_braket")


def private_directory(path: Path) -> Path:
    """`path` as a directory only its owner can enter, created with its parents if missing."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    if path.stat().st_mode & 0o077:
        path.chmod(0o700)
    return path
