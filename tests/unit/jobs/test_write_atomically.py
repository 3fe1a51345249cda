"""`write_atomically`: a file appears whole, private, and a failed write leaves what was there."""

import errno
import os
import stat

import pytest

from prefect_braket.jobs.data_persistence import write_atomically


def test_a_file_in_a_new_directory_is_whole_and_private_with_nothing_left_beside_it(tmp_path):
    path = tmp_path / "a" / "b" / "state.json"
    write_atomically(path, '{"é": 1}')
    assert path.read_text(encoding="utf-8") == '{"é": 1}'
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert os.listdir(path.parent) == ["state.json"]


def test_a_write_replaces_the_file_and_an_exclusive_one_refuses(tmp_path):
    path = tmp_path / "state.json"
    write_atomically(path, "old")
    write_atomically(path, "new")
    assert path.read_text() == "new"
    with pytest.raises(FileExistsError):
        write_atomically(path, "newer", exclusive=True)
    assert path.read_text() == "new"
    assert os.listdir(tmp_path) == ["state.json"]


def test_an_exclusive_write_of_a_new_file_leaves_only_the_file(tmp_path):
    path = tmp_path / "claim"
    write_atomically(path, "job-1", exclusive=True)
    assert path.read_text() == "job-1"
    assert os.listdir(tmp_path) == ["claim"]


def test_short_writes_are_continued_until_the_text_is_all_there(tmp_path, monkeypatch):
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real_write(fd, bytes(data[:3])))
    path = tmp_path / "state.json"
    write_atomically(path, "0123456789" * 5)
    assert path.read_text() == "0123456789" * 5


def test_a_write_that_fails_leaves_the_old_file_and_no_temporary_one(tmp_path, monkeypatch):
    path = tmp_path / "state.json"
    write_atomically(path, "old")

    def full_disk(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full_disk)
    with pytest.raises(OSError, match="No space"):
        write_atomically(path, "new")
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["state.json"]
