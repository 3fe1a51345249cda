"""The in-job helpers write and read exactly Braket's files and lines."""

import json

import numpy as np
import pytest
from braket.jobs_data import PersistedJobData
from braket.jobs_data import PersistedJobDataFormat as BraketFormat

from prefect_braket import jobs
from prefect_braket.core.metrics import MetricsParser, parse_metric_line


@pytest.fixture
def in_job(tmp_path, monkeypatch):
    monkeypatch.setenv("AMZN_BRAKET_JOB_NAME", "train-1")
    monkeypatch.setenv("AMZN_BRAKET_CHECKPOINT_DIR", str(tmp_path / "checkpoints"))
    monkeypatch.setenv("AMZN_BRAKET_JOB_RESULTS_DIR", str(tmp_path / "model"))
    (tmp_path / "model").mkdir()
    return tmp_path


def test_pickled_values_match_braket_bytes(in_job):
    # The document Braket's SDK writes for {"some_data": "abc"} in pickled_v4 (verified by run).
    jobs.save_job_checkpoint({"some_data": "abc"}, data_format="pickle")
    written = json.loads((in_job / "checkpoints" / "train-1.json").read_text())
    assert written == {
        "braketSchemaHeader": {"name": "braket.jobs_data.persisted_job_data", "version": "1"},
        "dataDictionary": {"some_data": "gASVBwAAAAAAAACMA2FiY5Qu\n"},
        "dataFormat": "pickled_v4",
    }


def test_checkpoint_parses_with_braket_schema_and_back(in_job):
    jobs.save_job_checkpoint({"theta": np.array([0.5, 1.5]), "i": 3}, checkpoint_file_suffix="plain")
    text = (in_job / "checkpoints" / "train-1_plain.json").read_text()
    parsed = PersistedJobData.parse_raw(text)
    assert parsed.dataFormat == BraketFormat.PLAINTEXT
    assert parsed.dataDictionary == {"theta": [0.5, 1.5], "i": 3}

    from_braket = PersistedJobData(dataDictionary={"energy": -1.1}, dataFormat=BraketFormat.PLAINTEXT).json()
    (in_job / "checkpoints" / "train-1_sdk.json").write_text(from_braket)
    assert jobs.load_job_checkpoint(checkpoint_file_suffix="sdk") == {"energy": -1.1}


def test_checkpoint_of_another_job_and_missing_checkpoint(in_job):
    (in_job / "checkpoints").mkdir()
    (in_job / "checkpoints" / "earlier.json").write_text(
        PersistedJobData(dataDictionary={"i": 2}, dataFormat=BraketFormat.PLAINTEXT).json()
    )
    assert jobs.load_job_checkpoint(job_name="earlier") == {"i": 2}
    with pytest.raises(FileNotFoundError):
        jobs.load_job_checkpoint()


def test_pickled_checkpoint_needs_allow_pickle(in_job):
    jobs.save_job_checkpoint({"obj": {1, 2}}, data_format="pickle")
    with pytest.raises(RuntimeError, match="allow_pickle=True"):
        jobs.load_job_checkpoint()
    assert jobs.load_job_checkpoint(allow_pickle=True) == {"obj": {1, 2}}


def test_bad_checkpoint_input_is_refused(in_job, monkeypatch):
    with pytest.raises(ValueError, match="empty"):
        jobs.save_job_checkpoint({})
    with pytest.raises(TypeError, match="'s' has type set.*data_format='pickle'"):
        jobs.save_job_checkpoint({"s": {1}})
    monkeypatch.delenv("AMZN_BRAKET_JOB_NAME")
    with pytest.raises(RuntimeError, match="inside a hybrid job"):
        jobs.save_job_checkpoint({"a": 1})


def test_results_merge_and_keep_pickled_format(in_job):
    jobs.save_job_result(1.5)
    jobs.save_job_result({"b": [1, 2]})
    assert jobs.load_job_result() == {"result": 1.5, "b": [1, 2]}
    jobs.save_job_result({"c": {3}}, data_format="pickle")
    jobs.save_job_result({"d": 4})  # stays pickled
    assert jobs.load_job_result(allow_pickle=True) == {"result": 1.5, "b": [1, 2], "c": {3}, "d": 4}
    with pytest.raises(TypeError, match="pickled_v4 using data format plaintext"):
        jobs.save_job_result({"e": 5}, data_format="plaintext")
    document = PersistedJobData.parse_raw((in_job / "model" / "results.json").read_text())
    assert document.dataFormat == BraketFormat.PICKLED_V4


def test_missing_results_file_is_empty(in_job):
    assert jobs.load_job_result() == {}


def test_environment_helpers_default_like_braket(monkeypatch, tmp_path):
    for name in ("AMZN_BRAKET_JOB_NAME", "AMZN_BRAKET_DEVICE_ARN", "AMZN_BRAKET_INPUT_DIR", "AMZN_BRAKET_HP_FILE"):
        monkeypatch.delenv(name, raising=False)
    assert jobs.get_job_name() == ""
    assert jobs.get_job_device_arn() == "local:none/none"
    assert jobs.get_input_data_dir("x") == "."
    assert jobs.get_hyperparameters() == {}
    monkeypatch.setenv("AMZN_BRAKET_INPUT_DIR", "/opt/braket/input/data")
    assert jobs.get_input_data_dir() == "/opt/braket/input/data/input"
    (tmp_path / "hp.json").write_text('{"lr": "0.1"}')
    monkeypatch.setenv("AMZN_BRAKET_HP_FILE", str(tmp_path / "hp.json"))
    assert jobs.get_hyperparameters() == {"lr": "0.1"}


def test_log_metric_prints_braket_line(capsys):
    jobs.log_metric(metric_name="energy", value=-0.5, timestamp=1700000000.0, iteration_number=3)
    assert capsys.readouterr().out == "Metrics - timestamp=1700000000.0; energy=-0.5; iteration_number=3;\n"
    with pytest.raises(ValueError, match="'my_loss'"):
        jobs.log_metric(metric_name="my-loss", value=1.0)
    with pytest.raises(TypeError, match="needs a number"):
        jobs.log_metric(metric_name="loss", value="high")


def test_parser_follows_braket_rules():
    assert parse_metric_line("hello") is None
    assert parse_metric_line("Metrics - my-loss=1; label=abc;") == {"loss": 1.0}
    assert parse_metric_line("[node-1] Metrics - x=2;", fallback_timestamp=5.0) == {
        "x": 2.0, "timestamp": 5.0, "node_id": "node-1"}
    parser = MetricsParser()
    for line in [
        "Metrics - timestamp=1; energy=-0.5; iteration_number=0;",
        "Metrics - timestamp=2; energy=-0.7; iteration_number=0;",
        "Metrics - timestamp=3; grad=0.1; iteration_number=1;",
        "Metrics - energy=-9;",  # no pivot column: dropped from the table
    ]:
        parser.feed(line)
    assert parser.table("iteration_number", "min") == {
        "timestamp": [1.0, 3.0], "energy": [-0.7, None], "iteration_number": [0.0, 1.0], "grad": [None, 0.1]}
    assert parser.table("iteration_number", "max")["energy"] == [-0.5, None]
    assert parser.table("timestamp")["energy"] == [-0.5, -0.7, None]
    with pytest.raises(ValueError, match="metric_type"):
        parser.table("iteration")
