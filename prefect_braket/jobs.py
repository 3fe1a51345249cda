"""What a hybrid job's own code calls while it runs, under Braket's names and formats.

These are drop-in twins of `braket.jobs` and `braket.jobs.metrics`: they read the same
`AMZN_BRAKET_*` variables and write the same files and lines, so a checkpoint, a result or a
metric line written here loads in Braket's SDK and the reverse.

This module uses the standard library only: it must import fast inside a job process and run
unchanged in Braket's own container.

Example:
    ```python
    from prefect_braket.jobs import log_metric, save_job_checkpoint, load_job_checkpoint

    def train(iterations: int = 10):
        try:
            state = load_job_checkpoint()
        except FileNotFoundError:
            state = {"theta": 0.0, "i": 0}
        for i in range(state["i"], iterations):
            state = {"theta": state["theta"] + 0.1, "i": i + 1}
            log_metric(metric_name="theta", value=state["theta"], iteration_number=i)
            save_job_checkpoint(state)
        return {"theta": state["theta"]}
    ```
"""

from __future__ import annotations

import codecs
import fcntl
import json
import math
import os
import pickle
import re
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Callable

__all__ = [
    "PersistedJobDataFormat",
    "get_checkpoint_dir",
    "get_hyperparameters",
    "get_input_data_dir",
    "get_job_device_arn",
    "get_job_name",
    "get_results_dir",
    "load_job_checkpoint",
    "load_job_result",
    "log_metric",
    "save_job_checkpoint",
    "save_job_result",
]

SCHEMA_HEADER = {"name": "braket.jobs_data.persisted_job_data", "version": "1"}
RESULTS_FILE = "results.json"
METRIC_NAME = re.compile(r"^\w+$")


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


def get_job_name() -> str:
    """The name of the running job, or "" outside a job."""
    return os.getenv("AMZN_BRAKET_JOB_NAME", "")


def get_job_device_arn() -> str:
    """The ARN of the job's device, whose tasks get the job's priority ("local:none/none" outside a job)."""
    return os.getenv("AMZN_BRAKET_DEVICE_ARN", "local:none/none")


def get_input_data_dir(channel: str = "input") -> str:
    """The directory holding the files of an input-data channel ("." outside a job)."""
    input_dir = os.getenv("AMZN_BRAKET_INPUT_DIR", ".")
    return f"{input_dir}/{channel}" if input_dir != "." else input_dir


def get_results_dir() -> str:
    """The directory whose files are packed into the job's `model.tar.gz`."""
    return os.getenv("AMZN_BRAKET_JOB_RESULTS_DIR", ".")


def get_checkpoint_dir() -> str:
    """The directory checkpoints are written to and kept in."""
    return os.getenv("AMZN_BRAKET_CHECKPOINT_DIR", ".")


def get_hyperparameters() -> dict[str, str]:
    """The job's hyperparameters, as strings, as they were submitted."""
    path = os.getenv("AMZN_BRAKET_HP_FILE")
    if not path:
        return {}
    with open(path) as f:
        return json.load(f)


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


def dump_persisted_data(data: dict[str, Any], data_format: PersistedJobDataFormat) -> str:
    """Renders Braket's `PersistedJobData` JSON document."""
    # One value at a time, so that an unserializable value is reported by its key.
    values = ", ".join(
        f"{json.dumps(str(key))}: {json.dumps(value, default=lambda v, k=key: _to_json_value(v, str(k)))}"
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


def _write_atomically(path: Path, text: str) -> None:
    # A job killed mid-write must leave the previous checkpoint intact, not half a file.
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


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
    _write_atomically(_checkpoint_path(job_name, checkpoint_file_suffix), dump_persisted_data(checkpoint_data, fmt))


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
    _write_atomically(path, dump_persisted_data(current | result_data, fmt))


def load_job_result(filename: str | Path | None = None, allow_pickle: bool = False) -> dict[str, Any]:
    """Reads a `results.json` (the current job's by default); {} if there is none."""
    path = Path(filename) if filename else Path(get_results_dir()) / RESULTS_FILE
    if not path.exists():
        return {}
    return load_persisted_data(path.read_text(), allow_pickle)


def _link_input(input_paths: dict[str, str]) -> list[Path]:
    # Relative input paths keep working inside the job: they point into its input channels.
    links = []
    for channel, original in input_paths.items():
        channel_dir = Path(get_input_data_dir(channel))
        inside = channel_dir / Path(original).name
        target = inside if inside.exists() and not inside.is_dir() else channel_dir
        link = Path(original)
        if link.is_absolute() or link.exists() or link.is_symlink():
            continue
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(target.resolve())
        links.append(link)
    return links


def run_decorated_function(
    call: Any, input_paths: dict[str, str], data_format: str, budget: dict[str, float] | None = None
) -> Any:
    """What a `hybrid_job` function's entry point runs inside the job.

    The call runs with the results directory as working directory (files it writes to relative
    paths end up in `model.tar.gz`), and its return value becomes the job's result. It travels
    pickled by value with the function, so the job needs neither this package nor Braket's SDK.
    `budget` (`max_cost_usd`, `instance_usd_per_hour`) starts the job's `JobBudget` first.
    """
    if budget:
        JobBudget.start(**budget)
    os.chdir(get_results_dir())
    links = _link_input(input_paths)
    try:
        result = call()
    finally:
        for link in links:
            link.unlink()
    if result is not None:
        save_job_result(result, data_format=data_format)
    return result


def format_metric_line(
    metric_name: str, value: float, timestamp: float | None = None, iteration_number: int | None = None
) -> str:
    """The `Metrics - …` line that Braket's metric parsers read."""
    if not METRIC_NAME.match(metric_name or ""):
        raise ValueError(
            f"Metric name {metric_name!r} must be letters, digits and underscores: Braket's parser "
            f"reads only \\w+ (try {re.sub(r'[^0-9A-Za-z_]+', '_', str(metric_name)) or 'value'!r})."
        )
    if isinstance(value, bool) or not isinstance(value, (int, float)) and not hasattr(value, "__float__"):
        raise TypeError(f"Metric {metric_name!r} needs a number, got {value!r}.")
    if math.isnan(float(value)):
        raise ValueError(f"Metric {metric_name!r} is NaN, which no metric parser keeps.")
    line = f"Metrics - timestamp={timestamp if timestamp is not None else time.time()}; {metric_name}={value};"
    if iteration_number is not None:
        line += f" iteration_number={iteration_number};"
    return line


def log_metric(
    metric_name: str, value: float, timestamp: float | None = None, iteration_number: int | None = None
) -> None:
    """Records one metric value by printing Braket's metric line to the job's log.

    Example:
        `log_metric(metric_name="energy", value=-1.13, iteration_number=3)` prints
        `Metrics - timestamp=1700000000.0; energy=-1.13; iteration_number=3;`
    """
    print(format_metric_line(metric_name, value, timestamp, iteration_number), flush=True)


# -- failure reasons ---------------------------------------------------------------------------------

FAILURE_FILE = "output/failure"  # under the instance: what the container turns into failureReason
BRAKET_INSTANCE = "/opt/ml"  # Braket's container's instance directory


def failure_file() -> Path:
    """Where this job's failure reason goes: the embedded engine's instance, or Braket's container's."""
    return Path(os.environ.get("PREFECT_BRAKET_INSTANCE_DIR") or BRAKET_INSTANCE) / FAILURE_FILE


# -- spending ------------------------------------------------------------------------------------------


class BudgetExceededError(RuntimeError):
    """Running this would take spending past the budget."""


class SpendingLedger:
    """Money spent against one budget, where everyone spending against it sees it.

    Without a `path` it is held in memory, shared by the threads (and copies) of one process. With a
    path it is a JSON file under an exclusive lock, shared by processes: the processes of one job,
    or every load of a saved device block on one machine. A damaged file is an error, never $0.
    """

    def __init__(self, path: str | Path | None = None, spent_usd: float = 0.0):
        self.path = Path(path) if path else None
        self._spent = spent_usd
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        # A lock does not travel; a copy in another process goes on from what was spent so far.
        return {"path": self.path, "_spent": self.spent()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"], state["_spent"])

    def __repr__(self) -> str:
        return f"SpendingLedger({str(self.path) if self.path else 'in memory'}, spent_usd={self.spent():.4f})"

    def _read(self) -> float:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return 0.0
        try:
            spent = json.loads(text)["spent_usd"]
            if isinstance(spent, bool) or not isinstance(spent, (int, float)) or not math.isfinite(spent):
                raise TypeError(f"spent_usd is {spent!r}")
            return float(spent)
        except (ValueError, KeyError, TypeError) as error:
            raise RuntimeError(
                f"The spending ledger {self.path} is damaged ({type(error).__name__}: {error}): restore it, or "
                "remove it to count this budget from $0 again."
            ) from None

    def update(self, change: Callable[[float], float]) -> float:
        """Replaces the amount spent with `change(spent)` atomically and returns it; if `change`
        raises, nothing changes."""
        with self._lock:
            if self.path is None:
                self._spent = change(self._spent)
                return self._spent
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            descriptor = os.open(self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX)
                spent = self._read()
                new = change(spent)
                if new != spent:
                    _write_atomically(self.path, json.dumps({"spent_usd": new}))
                return new
            finally:
                os.close(descriptor)

    def spent(self) -> float:
        return self.update(lambda spent: spent)

    def reserve(self, estimate_usd: float, limit_usd: float | None, refusal: Callable[[float], str]) -> None:
        """Counts `estimate_usd` as spent, or raises `BudgetExceededError(refusal(spent))` if that
        would pass `limit_usd` (None: no limit); nothing is counted then."""
        def add(spent: float) -> float:
            if limit_usd is not None and spent + estimate_usd > limit_usd + 1e-12:
                raise BudgetExceededError(refusal(spent))
            return spent + estimate_usd

        self.update(add)

    def settle(self, reserved_usd: float, actual_usd: float) -> None:
        """Replaces an estimate with what was actually spent."""
        self.update(lambda spent: spent + actual_usd - reserved_usd)


JOB_BUDGET_VARIABLE = "PREFECT_BRAKET_JOB_BUDGET"
WATCH_SECONDS = 0.5


@dataclass(frozen=True)
class JobBudget:
    """A hybrid job's `max_cost_usd`: its quantum tasks plus its instance time, held inside the job.

    Started by the job's entry point, it is found by every process of the job through an
    environment variable; tasks a `BraketDevice` runs reserve against it, and a watchdog thread
    ends the job, with `BudgetExceededError` as its failure reason, once instance time and tasks
    together pass the limit. Instance time counts from the start of the job's code.
    """

    max_cost_usd: float
    instance_usd_per_hour: float
    started: float
    ledger_path: str

    @classmethod
    def start(cls, max_cost_usd: float, instance_usd_per_hour: float) -> "JobBudget":
        """Sets this job's budget up (for its later processes too) and starts its watchdog."""
        ledger = Path(tempfile.mkdtemp(prefix="prefect-braket-budget-")) / "tasks.json"
        budget = cls(float(max_cost_usd), float(instance_usd_per_hour), time.time(), str(ledger))
        os.environ[JOB_BUDGET_VARIABLE] = json.dumps(asdict(budget))
        threading.Thread(target=budget._watch, name="prefect-braket-budget", daemon=True).start()
        return budget

    @classmethod
    def current(cls) -> "JobBudget | None":
        """The budget of the job this code runs in, if it has one."""
        text = os.environ.get(JOB_BUDGET_VARIABLE)
        return cls(**json.loads(text)) if text else None

    @property
    def ledger(self) -> SpendingLedger:
        return SpendingLedger(self.ledger_path)

    def instance_usd(self) -> float:
        return self.instance_usd_per_hour * max(0.0, time.time() - self.started) / 3600.0

    def describe(self, tasks_usd: float) -> str:
        instance = self.instance_usd()
        return (f"${tasks_usd + instance:.4f} (tasks ${tasks_usd:.4f}, instance time ${instance:.4f} for "
                f"{time.time() - self.started:.0f} s)")

    def reserve(self, estimate_usd: float, what: str) -> None:
        """Counts a task's estimate, or raises if it would take the job past its budget."""
        self.ledger.reserve(estimate_usd, self.max_cost_usd - self.instance_usd(), lambda spent: (
            f"{what} is estimated at ${estimate_usd:.4f}; this job has spent {self.describe(spent)}, so it "
            f"would pass the job's max_cost_usd of ${self.max_cost_usd:.2f}. Raise max_cost_usd or run less."))

    def settle(self, reserved_usd: float, actual_usd: float) -> None:
        """Replaces a task's estimate with what it cost."""
        self.ledger.settle(reserved_usd, actual_usd)

    def _watch(self) -> None:
        while True:
            spent = self.ledger.spent()
            if spent + self.instance_usd() > self.max_cost_usd:
                self._stop(f"BudgetExceededError: The job was stopped: it has spent {self.describe(spent)}, past its "
                           f"max_cost_usd of ${self.max_cost_usd:.2f}.")
            time.sleep(WATCH_SECONDS)

    @staticmethod
    def _stop(reason: str) -> None:
        # Ending the process is the one stop that user code cannot catch; what it wrote to its
        # results and checkpoint directories stays, and the engine ends its other processes.
        file = failure_file()
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(f"AlgorithmError: {reason}")
        print(reason, file=sys.stderr, flush=True)
        os._exit(1)
