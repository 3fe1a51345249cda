"""Where an experiment's checkpoint lives (`variational.checkpoints`): a directory, a `file://` URL,
or any other URL through fsspec (its in-memory file system here, as `s3://` goes through s3fs;
tests/integration/variational/test_variational.py uses S3 on moto)."""

import json
import uuid

import fsspec
import pytest

from prefect_braket.variational.checkpoints import (
    checkpoint_path,
    default_location,
    load_checkpoint,
    save_checkpoint,
)

STATE = {"parameters": [0.5], "history": [], "converged": False, "initial": None}


def test_paths_join_the_location_and_the_experiment_id():
    assert checkpoint_path("/data/experiments/", "vqe-1") == "/data/experiments/vqe-1.json"
    assert checkpoint_path("s3://bucket/prefix//", "vqe-1") == "s3://bucket/prefix/vqe-1.json"
    assert checkpoint_path("/data", "vqe-1") == "/data/vqe-1.json"


def test_the_default_location_is_under_the_package_home(tmp_path, monkeypatch):
    monkeypatch.setenv("PREFECT_BRAKET_HOME", str(tmp_path / "home"))
    assert default_location() == str(tmp_path / "home" / "experiments")


@pytest.mark.parametrize("form", ["directory", "file-url"])
def test_a_local_checkpoint_is_written_whole_and_read_back(tmp_path, form):
    location = str(tmp_path / "exp") if form == "directory" else f"file://{tmp_path / 'exp'}"
    assert load_checkpoint(location, "vqe-1") is None
    save_checkpoint(location, "vqe-1", STATE)
    document = json.loads((tmp_path / "exp" / "vqe-1.json").read_text())
    assert document["braketSchemaHeader"]["name"] == "braket.jobs_data.persisted_job_data"
    assert load_checkpoint(location, "vqe-1") == STATE
    save_checkpoint(location, "vqe-1", {**STATE, "converged": True})  # replaced, not appended
    assert load_checkpoint(location, "vqe-1")["converged"] is True


def test_a_url_checkpoint_goes_through_fsspec(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a URL taken for a local path would be written under here
    # A prefix of this test's own: the in-memory file system lasts as long as the process.
    location = f"memory://checkpoints-{uuid.uuid4().hex}/experiments"
    assert load_checkpoint(location, "vqe-1") is None
    save_checkpoint(location, "vqe-1", STATE)
    with fsspec.open(f"{location}/vqe-1.json", "r") as f:
        assert json.loads(f.read())["dataDictionary"] == STATE
    assert load_checkpoint(location, "vqe-1") == STATE
    assert not (tmp_path / "memory:").exists()  # not taken for a local path


@pytest.mark.parametrize("form", ["directory", "file-url"])
def test_a_local_checkpoint_replaces_a_link_in_its_place_instead_of_writing_through_it(tmp_path, form):
    outside = tmp_path / "outside.txt"
    outside.write_text("original")
    (tmp_path / "exp").mkdir()
    (tmp_path / "exp" / "vqe-1.json").symlink_to(outside)
    location = str(tmp_path / "exp") if form == "directory" else f"file://{tmp_path / 'exp'}"
    save_checkpoint(location, "vqe-1", STATE)  # written beside, then moved into place
    assert outside.read_text() == "original"
    assert not (tmp_path / "exp" / "vqe-1.json").is_symlink() and load_checkpoint(location, "vqe-1") == STATE
