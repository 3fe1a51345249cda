import io
import tarfile

import pytest

from prefect_braket.archive import UnsafeArchiveError, pack_directory, safe_extract


def _archive(path, members):
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _file(name, data=b"x"):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _link(name, target, kind=tarfile.SYMTYPE):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info, None


@pytest.mark.parametrize(
    "member",
    [_file("../escape.txt"), _file("/etc/evil.txt"), _file("a/../../escape.txt"),
     _link("link", "../../outside"), _link("link", "/etc/passwd"), _link("hard", "../x", tarfile.LNKTYPE)],
    ids=["dotdot", "absolute", "nested-dotdot", "symlink-out", "symlink-absolute", "hardlink-out"],
)
def test_crafted_members_are_refused_before_anything_is_written(tmp_path, member):
    archive = _archive(tmp_path / "model.tar.gz", [_file("good.txt"), member])
    target = tmp_path / "out"
    with pytest.raises(UnsafeArchiveError, match="Refusing archive member"):
        safe_extract(archive, target)
    assert not (target / "good.txt").exists()
    assert not (tmp_path / "escape.txt").exists()


def test_links_inside_the_target_and_nested_files_extract(tmp_path):
    archive = _archive(tmp_path / "a.tar.gz", [_file("dir/data.txt", b"hello"), _link("dir/alias", "data.txt")])
    out = safe_extract(archive, tmp_path / "out")
    assert (out / "dir" / "alias").read_text() == "hello"


def test_pack_directory_puts_contents_at_the_archive_root(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "results.json").write_text("{}")
    pack_directory(tmp_path / "model", tmp_path / "model.tar.gz")
    with tarfile.open(tmp_path / "model.tar.gz") as tar:
        assert tar.getnames() == ["results.json"]
