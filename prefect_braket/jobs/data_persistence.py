"""Checkpoints and results in Braket's `PersistedJobData` format (plaintext JSON or pickled_v4).

A file written here loads with `braket.jobs.load_job_checkpoint` / `load_job_result` and the reverse.
"""

from __future__ import annotations

import codecs
import json
import os
import pickle
import secrets
from enum import Enum
from pathlib import Path
from typing import Any

from prefect_braket.jobs.environment import (
    get_checkpoint_dir,
    get_job_name,
    get_results_dir,
)

SCHEMA_HEADER = {"name": "braket.jobs_data.persisted_job_data", "version": "1"}


RESULTS_FILE = "results.json"


class PersistedJobDataFormat(str, Enum):
    """How the values of a checkpoint or result are stored (Braket's `PersistedJobDataFormat`)."""

    PLAINTEXT = "plaintext"
    PICKLED_V4 = "pickled_v4"

    @classmethod
    def parse(cls, value: "PersistedJobDataFormat | str | None") -> "PersistedJobDataFormat":
        if isinstance(value, cls):
            return value
        aliases = {"plaintext": cls.PLAINTEXT, "pickle": cls.PICKLED_V4, "pickled_v4": cls.PICKLED_V4}
        try:
            return aliases[str(value).lower()]
        except KeyError:
            raise ValueError(
                f"Unknown data format {value!r}: use 'plaintext' (JSON) or 'pickle' (pickled_v4)."
            ) from None


def _to_json_value(value: Any, key: str) -> Any:
    # Braket's SDK refuses numpy values in plaintext; lists and Python numbers read back in both.
    if hasattr(value, "tolist") and callable(value.tolist):
        return value.tolist()
    if isinstance(value, complex):
        raise TypeError(
            f"Value of {key!r} is complex ({value!r}), which JSON cannot hold: "
            "store (real, imag) or use data_format='pickle'."
        )
    raise TypeError(
        f"Value of {key!r} has type {type(value).__name__}, which is not JSON-serializable: "
        "convert it to lists, numbers and strings, or use data_format='pickle' "
        "(and read it back with allow_pickle=True)."
    )


def serialize_values(data: dict[str, Any], data_format: PersistedJobDataFormat) -> dict[str, Any]:
    """Encodes a dictionary's values as Braket does: unchanged, or one base64 pickle per value."""
    if data_format is PersistedJobDataFormat.PICKLED_V4:
        return {k: codecs.encode(pickle.dumps(v, protocol=4), "base64").decode() for k, v in data.items()}
    return data


def deserialize_values(
    data: dict[str, Any], data_format: PersistedJobDataFormat | str, allow_pickle: bool = False
) -> dict[str, Any]:
    """Decodes what `serialize_values` wrote; pickled data needs `allow_pickle=True`."""
    if PersistedJobDataFormat.parse(data_format) is PersistedJobDataFormat.PLAINTEXT:
        return data
    if not allow_pickle:
        raise RuntimeError(
            "This data is pickled (pickled_v4), and unpickling runs code from the file: pass "
            "allow_pickle=True if you trust where it came from."
        )
    return {k: pickle.loads(codecs.decode(v.encode(), "base64")) for k, v in data.items()}


def _value_json(value: Any, key: str) -> str:
    """One value of the data dictionary as JSON, numpy values as lists; an error names `key`."""
    return json.dumps(value, default=lambda item: _to_json_value(item, key))


def dump_persisted_data(data: dict[str, Any], data_format: PersistedJobDataFormat) -> str:
    """Renders Braket's `PersistedJobData` JSON document."""
    # One value at a time, so that an unserializable value is reported by its key.
    values = ", ".join(
        f"{json.dumps(str(key))}: {_value_json(value, str(key))}"
        for key, value in serialize_values(data, data_format).items()
    )
    return (
        f'{{"braketSchemaHeader": {json.dumps(SCHEMA_HEADER)}, "dataDictionary": {{{values}}}, '
        f'"dataFormat": "{data_format.value}"}}'
    )


def load_persisted_data(text: str, allow_pickle: bool = False) -> dict[str, Any]:
    """Parses a `PersistedJobData` JSON document into its decoded dictionary."""
    document = json.loads(text)
    return deserialize_values(document["dataDictionary"], document["dataFormat"], allow_pickle)


_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL


def write_atomically(path: Path, text: str, exclusive: bool = False) -> None:
    """Writes `path` whole, readable by its owner only: a reader (or a job killed mid-write) sees the
    old file or the new one, never half of one. `exclusive` raises FileExistsError rather than
    replace an existing file (a hard link appears whole and never replaces).

    Four blocking system calls where the directory exists (open, write, close, rename), against
    twelve through `open()` and an upfront `mkdir`: a checkpoint written from a thread of its own
    every iteration hands the GIL back and forth with the loop's circuits at each of them."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        descriptor = os.open(tmp, _NEW_FILE, 0o600)
    except FileNotFoundError:  # the directory's first file
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(tmp, _NEW_FILE, 0o600)
    try:
        try:
            data = memoryview(text.encode())
            while data:
                data = data[os.write(descriptor, data):]
        finally:
            os.close(descriptor)
        (os.link if exclusive else os.replace)(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if exclusive:
        tmp.unlink()  # the link holds the file now


def _checkpoint_path(job_name: str, suffix: str) -> Path:
    file_name = f"{job_name}_{suffix}.json" if suffix else f"{job_name}.json"
    return Path(get_checkpoint_dir()) / file_name


def checkpoint_name_for(file_name: str, from_job: str, to_job: str) -> str:
    """The name `file_name`, a checkpoint of job `from_job`, takes in job `to_job`'s checkpoints, so
    that the new job's `load_job_checkpoint()` finds it (other files keep their names)."""
    if file_name == f"{from_job}.json":
        return f"{to_job}.json"
    if file_name.startswith(f"{from_job}_") and file_name.endswith(".json"):
        return f"{to_job}{file_name[len(from_job):]}"
    return file_name


def save_job_checkpoint(
    checkpoint_data: dict[str, Any],
    checkpoint_file_suffix: str = "",
    data_format: PersistedJobDataFormat | str = PersistedJobDataFormat.PLAINTEXT,
) -> None:
    """Saves `checkpoint_data` as `{checkpoint_dir}/{job_name}[_{suffix}].json`, replacing the last one.

    Args:
        checkpoint_data: The values to keep; must not be empty.
        checkpoint_file_suffix: Distinguishes several checkpoints of one job.
        data_format: "plaintext" (JSON; numpy arrays become lists) or "pickle".
    """
    if not checkpoint_data:
        raise ValueError("checkpoint_data is empty: pass the values to keep, e.g. {'theta': theta}.")
    job_name = get_job_name()
    if not job_name:
        raise RuntimeError(
            "save_job_checkpoint runs inside a hybrid job (AMZN_BRAKET_JOB_NAME is not set here)."
        )
    fmt = PersistedJobDataFormat.parse(data_format)
    write_atomically(_checkpoint_path(job_name, checkpoint_file_suffix), dump_persisted_data(checkpoint_data, fmt))


def load_job_checkpoint(
    job_name: str | None = None, checkpoint_file_suffix: str = "", allow_pickle: bool = False
) -> dict[str, Any]:
    """Loads the checkpoint a job saved; raises FileNotFoundError if there is none.

    Args:
        job_name: Whose checkpoint to read; the current job's by default. A job started with
            `copy_checkpoints_from_job` finds the earlier job's files under the earlier job's name.
        checkpoint_file_suffix: The suffix it was saved with.
        allow_pickle: Needed to read a checkpoint saved with data_format="pickle".
    """
    name = job_name or get_job_name()
    path = _checkpoint_path(name, checkpoint_file_suffix)
    return load_persisted_data(path.read_text(), allow_pickle)


def save_job_result(
    result_data: Any, data_format: PersistedJobDataFormat | str | None = None
) -> None:
    """Saves the job's result to `{results_dir}/results.json`, merged into what is there.

    A value that is not a dict is stored as `{"result": value}`. Once the file is pickled it stays
    pickled; asking for plaintext then is a TypeError, as in Braket.
    """
    if not isinstance(result_data, dict):
        result_data = {"result": result_data}
    path = Path(get_results_dir()) / RESULTS_FILE
    current: dict[str, Any] = {}
    fmt = PersistedJobDataFormat.parse(data_format) if data_format else PersistedJobDataFormat.PLAINTEXT
    if path.exists():
        document = json.loads(path.read_text())
        existing_format = PersistedJobDataFormat.parse(document["dataFormat"])
        if existing_format is PersistedJobDataFormat.PICKLED_V4:
            if data_format is not None and fmt is PersistedJobDataFormat.PLAINTEXT:
                raise TypeError(
                    "Cannot update results object serialized with pickled_v4 using data format plaintext."
                )
            fmt = existing_format
        current = deserialize_values(document["dataDictionary"], existing_format, allow_pickle=True)
    write_atomically(path, dump_persisted_data(current | result_data, fmt))


def load_job_result(filename: str | Path | None = None, allow_pickle: bool = False) -> dict[str, Any]:
    """Reads a `results.json` (the current job's by default); {} if there is none."""
    path = Path(filename) if filename else Path(get_results_dir()) / RESULTS_FILE
    if not path.exists():
        return {}
    return load_persisted_data(path.read_text(), allow_pickle)
