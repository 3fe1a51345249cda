"""An experiment's checkpoint: one Braket `PersistedJobData` JSON file per experiment id.

The file is what `LoopState.to_checkpoint` returns, in the format of a hybrid job's checkpoints,
so `braket.jobs.load_job_checkpoint` reads it too. It lives in a local directory (replaced
whole, so a crash mid-write leaves the previous checkpoint) or under a URL such as an `s3://`
prefix, through fsspec (an object store replaces an object whole by itself).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect_braket.core.home import package_home
from prefect_braket.jobs.data_persistence import (
    PersistedJobDataFormat,
    dump_persisted_data,
    load_persisted_data,
    write_atomically,
)


def default_location() -> str:
    """Where checkpoints go unless a run names a location: `$PREFECT_BRAKET_HOME/experiments`."""
    return str(package_home() / "experiments")


def checkpoint_path(location: str, experiment_id: str) -> str:
    return f"{str(location).rstrip('/')}/{experiment_id}.json"


def _local_file(path: str) -> Path | None:
    """The local file a checkpoint path names, or None for a URL that fsspec opens."""
    if "://" not in path or path.startswith("file://"):
        return Path(path.removeprefix("file://"))
    return None


def load_checkpoint(location: str, experiment_id: str) -> dict[str, Any] | None:
    """The experiment's checkpoint (Braket's `PersistedJobData` JSON), or None."""
    path = checkpoint_path(location, experiment_id)
    try:
        if (local := _local_file(path)) is not None:
            return load_persisted_data(local.read_text())
        import fsspec  # with s3fs behind it: loaded only for a URL

        with fsspec.open(path, "r") as f:
            return load_persisted_data(f.read())
    except FileNotFoundError:
        return None


def save_checkpoint(location: str, experiment_id: str, state: dict[str, Any]) -> None:
    """Replaces the experiment's checkpoint with `state`."""
    path = checkpoint_path(location, experiment_id)
    text = dump_persisted_data(state, PersistedJobDataFormat.PLAINTEXT)
    if (local := _local_file(path)) is not None:
        write_atomically(local, text)
        return
    import fsspec

    with fsspec.open(path, "w") as f:
        f.write(text)
