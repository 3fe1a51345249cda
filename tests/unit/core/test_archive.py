"""Archives as hostile input: every case here is a member or an archive a job, or anyone who can
write to its S3 bucket, could put in `model.tar.gz`."""

import gzip
import os
import re
import struct
import tarfile

import pytest

from helpers.archives import (
    directory,
    hardlink,
    link_chain,
    regular,
    special,
    symlink,
    tar_gz,
)
from prefect_braket.core import archive as archive_module
from prefect_braket.core.archive import (
    ArchiveTooLargeError,
    UnsafeArchiveError,
    pack_directory,
    pack_source,
    read_member,
    safe_extract,
)


def _archive(path, members, **options):
    path.write_bytes(tar_gz(members, **options))
    return path


def _tree(root):
    """Every path under `root` with what it is: file contents, "dir", or "link"."""
    found = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        found[relative] = "link" if path.is_symlink() else "dir" if path.is_dir() else path.read_bytes()
    return found


@pytest.fixture
def victim(tmp_path):
    """A file two levels above `destination`, where the chain's hard link points."""
    path = tmp_path / "g" / "tmp" / "victim.txt"
    path.parent.mkdir(parents=True)
    path.write_text("original")
    return path


@pytest.fixture
def destination(tmp_path):
    return tmp_path / "g" / "p" / "out"


def test_the_link_chain_is_refused_and_the_file_outside_is_untouched(tmp_path, victim, destination):
    archive = _archive(tmp_path / "model.tar.gz", [regular("results.json", b"{}"), *link_chain()])
    with pytest.raises(UnsafeArchiveError, match=r"member 'a': its link target '\.' is a directory"):
        safe_extract(archive, destination)
    assert victim.read_text() == "original"
    assert not destination.exists()
    with pytest.raises(UnsafeArchiveError, match="member 'a'"):
        read_member(archive, "results.json")


@pytest.mark.parametrize("extraction_filter", ["fully_trusted", "tar"])
def test_the_chain_is_a_real_escape_for_tarfiles_own_extraction(tmp_path, victim, destination, extraction_filter):
    """What the refusal above guards against: the previous code's extraction (its checks passed
    this archive, then extractall(filter="tar")) overwrote the file, as "fully_trusted" does."""
    archive = _archive(tmp_path / "model.tar.gz", link_chain())
    destination.mkdir(parents=True)
    with tarfile.open(archive) as tar:
        tar.extractall(destination, filter=extraction_filter)
    assert victim.read_text() == "owned"


@pytest.mark.parametrize(
    "members",
    [
        [regular("../escape.txt")],
        [regular("/etc/evil.txt")],
        [regular("//etc/evil.txt")],
        [regular("a/../../escape.txt")],
        [regular("a//./../../escape.txt")],
        [regular("..\\escape.txt")],
        [symlink("link", "../../outside")],
        [symlink("link", "/etc/passwd")],
        [symlink("link", "sub/../../outside")],
        [hardlink("hard", "../x")],
        [hardlink("hard", "/etc/passwd")],
        [hardlink("hard", "a/../../x")],
        [symlink("here", ".")],
        [symlink("here", "")],
        [directory("sub"), symlink("d", "sub"), regular("d/x")],  # a link to a directory, then a file through it
        [directory("sub"), hardlink("d", "sub")],
        [symlink("alias", "missing.txt")],
        [symlink("alias", "later.txt"), regular("later.txt")],  # names nothing earlier
        [hardlink("alias", "later.txt"), regular("later.txt")],
        [regular("f"), symlink("l", "f"), symlink("m", "l/../f")],  # through a file, as if it were a directory
        [regular("f"), symlink("l", "f/")],
        [regular("f"), regular("f/x")],
        # a later member replaces a directory
        [directory("d"), regular("d/x"), symlink("d", "good.txt"), regular("d/evil")],
        [directory("d"), symlink("d", "/etc")],
        [regular("good.txt", b"second")],
        [regular("x"), directory("x")],
        [regular(".")],
        [special("dev", tarfile.CHRTYPE)],
        [special("disk", tarfile.BLKTYPE)],
        [special("pipe", tarfile.FIFOTYPE)],
    ],
    ids=["dotdot", "absolute", "double-slash-absolute", "nested-dotdot", "dotdot-after-slashes-and-dot",
         "backslash", "symlink-out", "symlink-absolute", "symlink-dotdot-out", "hardlink-out", "hardlink-absolute",
         "hardlink-dotdot-out", "symlink-to-root", "symlink-empty", "symlink-to-dir-then-file-through-it",
         "hardlink-to-dir", "symlink-dangling", "symlink-forward", "hardlink-forward", "symlink-through-a-file",
         "symlink-trailing-slash-on-file", "parent-is-a-file", "duplicate-replaces-dir-with-link",
         "duplicate-dir-then-link-out", "duplicate-file", "file-then-dir", "root-as-file", "char-device",
         "block-device", "fifo"],
)
def test_crafted_members_are_refused_before_anything_is_written(tmp_path, members):
    archive = _archive(tmp_path / "model.tar.gz", [regular("good.txt"), *members])
    target = tmp_path / "out"
    with pytest.raises(UnsafeArchiveError, match="Refusing archive member"):
        safe_extract(archive, target)
    assert not target.exists()
    assert not (tmp_path / "escape.txt").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UnsafeArchiveError, match="Refusing archive member"):
        safe_extract(archive, empty)
    assert list(empty.iterdir()) == []  # an existing empty destination stays empty
    with pytest.raises(UnsafeArchiveError, match="Refusing archive member"):
        read_member(archive, "good.txt")  # reading one file checks the whole archive


def test_internal_links_come_back_as_copies_and_names_are_normalised(tmp_path):
    archive = _archive(tmp_path / "a.tar.gz", [
        directory("./"), regular("./results.json", b"{}"), regular("dir//data.txt", b"hello"),
        symlink("dir/alias", "data.txt"), symlink("dir/dotted", "./data.txt"), hardlink("hard", "dir/./data.txt"),
        symlink("dir/up", "../hard"), symlink("chained", "dir/alias"), directory("dir"),
        regular("dir/sub/deep.txt", b"deep"),
    ])
    out = safe_extract(archive, tmp_path / "out")
    assert _tree(out) == {
        "chained": b"hello", "dir": "dir", "dir/alias": b"hello", "dir/data.txt": b"hello", "dir/dotted": b"hello",
        "dir/sub": "dir", "dir/sub/deep.txt": b"deep", "dir/up": b"hello", "hard": b"hello", "results.json": b"{}",
    }
    assert read_member(archive, "dir/up") == b"hello"


def test_modes_keep_the_executable_bit_and_drop_setuid_and_writes_by_others(tmp_path):
    tool, data = regular("tool.sh", b"#!/bin/sh\n"), regular("data.txt")
    tool[0].mode, data[0].mode = 0o4777, 0o666
    out = safe_extract(_archive(tmp_path / "a.tar.gz", [tool, data]), tmp_path / "out")
    assert (out / "tool.sh").stat().st_mode & 0o7777 == 0o755 & ~_umask()
    assert (out / "data.txt").stat().st_mode & 0o7777 == 0o644 & ~_umask()


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_destination_that_is_not_new_or_empty_is_refused(tmp_path):
    archive = _archive(tmp_path / "a.tar.gz", [regular("results.json", b"{}")])
    outside = tmp_path / "outside.txt"
    outside.write_text("original")
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "results.json").symlink_to(outside)
    with pytest.raises(FileExistsError, match="not an empty directory"):
        safe_extract(archive, occupied)
    empty = tmp_path / "empty"
    empty.mkdir()
    linked = tmp_path / "linked"
    linked.symlink_to(empty)
    with pytest.raises(FileExistsError, match="not an empty directory"):
        safe_extract(archive, linked)  # a link to an empty directory is not one
    assert outside.read_text() == "original" and list(empty.iterdir()) == []
    assert safe_extract(archive, empty) == empty and (empty / "results.json").read_bytes() == b"{}"


def test_links_that_appear_in_the_destination_meanwhile_cannot_redirect_a_write(tmp_path, monkeypatch):
    """As if someone planted links between the emptiness check and the writes: O_EXCL and
    O_NOFOLLOW refuse them, and what was written is removed."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim.txt").write_text("original")
    monkeypatch.setattr(archive_module, "vacant", lambda path: True)
    for planted, members in [("results.json", [regular("results.json", b"owned")]),
                             ("d", [directory("d"), regular("d/victim.txt", b"owned")]),
                             ("d", [regular("d/victim.txt", b"owned")])]:
        destination = tmp_path / f"out-{len(members)}-{planted}"
        destination.mkdir()
        link = destination / planted
        link.symlink_to(outside / "victim.txt" if planted == "results.json" else outside)
        with pytest.raises(OSError):
            safe_extract(_archive(tmp_path / "a.tar.gz", [regular("first.txt"), *members]), destination)
        assert (outside / "victim.txt").read_text() == "original"
        assert list(outside.iterdir()) == [outside / "victim.txt"]
        assert not (destination / "first.txt").exists()


def test_a_small_gzip_declaring_a_huge_member_is_refused_before_writing(tmp_path):
    archive = tmp_path / "bomb.tar.gz"
    huge = tarfile.TarInfo("huge.bin")
    huge.size = 2**40  # declared, not present: refused at its header, before any data would be read
    with gzip.open(archive, "wb") as raw:
        raw.write(regular("results.json", b"{}")[0].tobuf() + b"{}".ljust(512, b"\0") + huge.tobuf())
    assert archive.stat().st_size < 1024
    with pytest.raises(ArchiveTooLargeError) as caught:
        safe_extract(archive, tmp_path / "out")
    message = str(caught.value)
    assert "1,099,511,627,778 by member 2, 'huge.bin'" in message
    assert "10,737,418,240 bytes" in message and "max_bytes=" in message
    assert "PREFECT_BRAKET_MAX_ARCHIVE_BYTES" in message
    assert not (tmp_path / "out").exists()
    with pytest.raises(ArchiveTooLargeError):
        read_member(archive, "results.json")


def test_a_compressed_bomb_is_refused_and_the_limit_is_raised_by_keyword_or_environment(tmp_path, monkeypatch):
    archive = _archive(tmp_path / "bomb.tar.gz", [regular("results.json", b"{}"), regular("zeros.bin", bytes(4 << 20))])
    assert archive.stat().st_size < 64 << 10
    with pytest.raises(ArchiveTooLargeError, match="more than 1,048,576 bytes: 4,194,306 by member 2"):
        safe_extract(archive, tmp_path / "out", max_bytes=1 << 20)
    assert not (tmp_path / "out").exists()
    monkeypatch.setenv("PREFECT_BRAKET_MAX_ARCHIVE_BYTES", str(1 << 20))
    with pytest.raises(ArchiveTooLargeError):
        safe_extract(archive, tmp_path / "out")
    with pytest.raises(ArchiveTooLargeError):
        read_member(archive, "results.json")
    monkeypatch.setenv("PREFECT_BRAKET_MAX_ARCHIVE_BYTES", str((4 << 20) + 2))
    assert read_member(archive, "results.json") == b"{}"
    assert (safe_extract(archive, tmp_path / "out") / "zeros.bin").stat().st_size == 4 << 20
    assert read_member(archive, "results.json", max_bytes=(4 << 20) + 2) == b"{}"  # the keyword wins
    with pytest.raises(ArchiveTooLargeError):
        read_member(archive, "results.json", max_bytes=(4 << 20) + 1)
    monkeypatch.setenv("PREFECT_BRAKET_MAX_ARCHIVE_BYTES", "10GiB")
    with pytest.raises(ValueError, match="PREFECT_BRAKET_MAX_ARCHIVE_BYTES='10GiB' is not a whole number"):
        read_member(archive, "results.json")


def test_copies_of_links_count_toward_the_limit(tmp_path):
    archive = _archive(tmp_path / "a.tar.gz", [regular("data.bin", bytes(1000)), hardlink("copy", "data.bin"),
                                               symlink("alias", "copy")])
    with pytest.raises(ArchiveTooLargeError, match="3,000 by member 3, 'alias'"):
        safe_extract(archive, tmp_path / "out", max_bytes=2999)
    assert _tree(safe_extract(archive, tmp_path / "out", max_bytes=3000)) == {
        "alias": bytes(1000), "copy": bytes(1000), "data.bin": bytes(1000)}


def test_many_small_members_are_refused_by_count(tmp_path, monkeypatch):
    archive = _archive(tmp_path / "many.tar.gz", [regular(f"f{i}", b"") for i in range(300)])
    refusal = "more than 299 members .*max_members=.*PREFECT_BRAKET_MAX_ARCHIVE_MEMBERS"
    with pytest.raises(ArchiveTooLargeError, match=refusal):
        safe_extract(archive, tmp_path / "out", max_members=299)
    assert not (tmp_path / "out").exists()
    monkeypatch.setenv("PREFECT_BRAKET_MAX_ARCHIVE_MEMBERS", "299")
    with pytest.raises(ArchiveTooLargeError):
        safe_extract(archive, tmp_path / "out")
    monkeypatch.setenv("PREFECT_BRAKET_MAX_ARCHIVE_MEMBERS", "300")
    assert len(list(safe_extract(archive, tmp_path / "out").iterdir())) == 300


def test_a_huge_extended_header_is_refused_without_reading_it_into_memory(tmp_path):
    long_name = regular("x" * 200 + "/" + "y" * 200)
    long_name[0].pax_headers = {"comment": "z" * (1 << 20)}
    archive = _archive(tmp_path / "pax.tar.gz", [long_name], format=tarfile.PAX_FORMAT)
    with pytest.raises(UnsafeArchiveError, match="it has a header of 1,04"):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    ordinary = regular("d" * 120 + "/" + "e" * 150 + ".txt", b"long names are fine")
    archive = _archive(tmp_path / "long.tar.gz", [ordinary], format=tarfile.PAX_FORMAT)
    assert read_member(archive, ordinary[0].name) == b"long names are fine"


def test_a_lying_gzip_or_truncated_member_leaves_nothing_behind(tmp_path):
    archive = _archive(tmp_path / "a.tar.gz", [regular("results.json", b"{}"), regular("zeros.bin", bytes(1 << 20))])
    lying = tmp_path / "lying.tar.gz"
    data = archive.read_bytes()
    lying.write_bytes(data[:-4] + struct.pack("<I", 10))  # its trailer claims 10 bytes uncompressed
    with pytest.raises(ArchiveTooLargeError):
        safe_extract(lying, tmp_path / "out", max_bytes=1000)  # the headers are believed, not the trailer
    truncated = tmp_path / "truncated.tar.gz"
    with gzip.open(truncated, "wb") as raw:  # declares 5000 bytes, holds 100
        raw.write(regular("first.txt")[0].tobuf() + b"x".ljust(512, b"\0") + regular("big.bin", bytes(5000))[0].tobuf()
                  + bytes(100))
    with pytest.raises(tarfile.ReadError, match="unexpected end of data"):
        safe_extract(truncated, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_read_member_reads_one_file_with_its_own_size_limit(tmp_path, monkeypatch):
    archive = _archive(tmp_path / "a.tar.gz", [regular("results.json", b'{"a": 1}'), directory("plots"),
                                               symlink("latest.json", "results.json"), regular("big.bin", bytes(5000))])
    assert read_member(archive, "./results.json") == b'{"a": 1}'
    assert read_member(archive, "latest.json") == b'{"a": 1}'
    with pytest.raises(FileNotFoundError, match="no member 'missing.json'"):
        read_member(archive, "missing.json")
    with pytest.raises(IsADirectoryError):
        read_member(archive, "plots")
    with pytest.raises(ArchiveTooLargeError, match="it is 5,000 bytes, over the limit of 4,999 .*max_size="):
        read_member(archive, "big.bin", max_size=4999)
    monkeypatch.setenv("PREFECT_BRAKET_MAX_RESULT_BYTES", "4999")
    with pytest.raises(ArchiveTooLargeError, match="PREFECT_BRAKET_MAX_RESULT_BYTES"):
        read_member(archive, "big.bin")
    assert read_member(archive, "results.json") == b'{"a": 1}'


def test_pack_directory_puts_contents_at_the_archive_root(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "results.json").write_text("{}")
    pack_directory(tmp_path / "model", tmp_path / "model.tar.gz")
    with tarfile.open(tmp_path / "model.tar.gz") as tar:
        assert tar.getnames() == ["results.json"]


def test_pack_directory_keeps_plain_files_identical(tmp_path):
    model = tmp_path / "model"
    (model / "plots" / "empty").mkdir(parents=True)
    files = {"results.json": b'{"x": 1}', "plots/a.png": os.urandom(3000), "plots/b.bin": bytes(range(256)),
             "run.sh": b"#!/bin/sh\n"}
    for name, data in files.items():
        (model / name).write_bytes(data)
    (model / "run.sh").chmod(0o755)
    pack_directory(model, tmp_path / "model.tar.gz")
    out = safe_extract(tmp_path / "model.tar.gz", tmp_path / "out")
    assert _tree(out) == {**files, "plots": "dir", "plots/empty": "dir"}
    assert os.access(out / "run.sh", os.X_OK)


def test_pack_directory_follows_no_link_out_and_holds_only_files_and_directories(tmp_path):
    outside = tmp_path / "secret.txt"
    outside.write_text("a file of this machine")
    model = tmp_path / "instance" / "model"
    (model / "sub").mkdir(parents=True)
    (model / "results.json").write_text("{}")
    (model / "sub" / "data.txt").write_text("inside")
    for name, target in [("a", "."), ("b", ".."), ("u0", "b/.."), ("root", "/"), ("secret", str(outside)),
                         ("climb", "a/a/b/../secret.txt"), ("dirlink", "sub"), ("dangling", "nothing"),
                         ("loop", "loop"), ("alias", "sub/data.txt"), ("sub/chained", "../a/alias")]:
        (model / name).symlink_to(target)
    os.link(model / "results.json", model / "sub" / "hardlinked.json")
    os.mkfifo(model / "pipe")
    pack_directory(model, tmp_path / "model.tar.gz")
    with tarfile.open(tmp_path / "model.tar.gz") as tar:
        members = tar.getmembers()
        assert all(m.isreg() or m.isdir() for m in members)
        assert sorted(m.name for m in members) == ["alias", "results.json", "sub", "sub/chained", "sub/data.txt",
                                                  "sub/hardlinked.json"]
    assert _tree(safe_extract(tmp_path / "model.tar.gz", tmp_path / "out")) == {
        "alias": b"inside", "results.json": b"{}", "sub": "dir", "sub/chained": b"inside", "sub/data.txt": b"inside",
        "sub/hardlinked.json": b"{}"}



@pytest.mark.parametrize(
    "member, why",
    [
        # `..` from the archive's root leaves it, even where the name under the root would be an earlier file.
        (symlink("link", "../good.txt"), "its link target '../good.txt' leaves the archive"),
        (hardlink("hard", "../good.txt"), "its link target '../good.txt' leaves the archive"),
        (symlink("sub/link", "../../good.txt"), "its link target '../../good.txt' leaves the archive"),
        (special("dev", tarfile.CHRTYPE), "it is a character device; only regular files"),
        (special("disk", tarfile.BLKTYPE), "it is a block device; only regular files"),
        (special("pipe", tarfile.FIFOTYPE), "it is a fifo; only regular files"),
        (special("odd", b"Z"), "it is of tar type b'Z'"),
        (directory("good.txt/inner"), "its parent 'good.txt' is a file, not a directory"),
        (symlink("alias", "good.txt/x"), "its link target 'good.txt/x' goes through a file"),
        (symlink("alias", "/good.txt"), "its link target '/good.txt' is absolute"),
        (hardlink("hard", "/good.txt"), "its link target '/good.txt' is absolute"),
        (symlink("alias", "missing/x"), "its link target 'missing/x' names nothing earlier in the archive"),
        (symlink("alias", "missing"), "its link target 'missing' names nothing earlier in the archive"),
        (symlink("alias", "sub"), "its link target 'sub' is a directory; only links to files are extracted"),
    ],
    ids=["symlink-up-from-root", "hardlink-up-from-root", "symlink-up-past-root", "char-device", "block-device",
         "fifo", "unknown-type", "dir-under-a-file", "link-through-a-file", "symlink-absolute", "hardlink-absolute",
         "through-nothing", "to-nothing", "to-a-directory"],
)
def test_a_refusal_names_the_member_and_why(tmp_path, member, why):
    # Each of these would otherwise be refused, or accepted, for another reason: the reason is what is checked.
    archive = _archive(tmp_path / "model.tar.gz", [regular("good.txt"), directory("sub"), member])
    with pytest.raises(UnsafeArchiveError, match=rf"Refusing archive member {member[0].name!r}: {re.escape(why)}"):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_links_resolve_up_and_through_empty_components_as_paths_do(tmp_path):
    archive = _archive(tmp_path / "a.tar.gz", [
        directory("sub"), directory("sub/deeper"), regular("sub/x", b"one up"), regular("top", b"at the root"),
        symlink("sub/deeper/up", "../x"), symlink("sub/deeper/two-up", "../../top"), symlink("double", "sub//x"),
    ])
    out = safe_extract(archive, tmp_path / "out")
    assert (out / "sub" / "deeper" / "up").read_bytes() == b"one up"
    assert (out / "sub" / "deeper" / "two-up").read_bytes() == b"at the root"
    assert (out / "double").read_bytes() == b"one up"
    assert not (out / "sub" / "deeper" / "up").is_symlink()  # a copy, not a link


def test_read_member_checks_the_whole_archive_against_its_limits(tmp_path):
    archive = _archive(tmp_path / "a.tar.gz", [regular("results.json", b"{}"), regular("b", b"x" * 10)])
    with pytest.raises(ArchiveTooLargeError, match=f"Refusing archive {tmp_path / 'a.tar.gz'}: it has more than 1 "):
        read_member(archive, "results.json", max_members=1)
    with pytest.raises(ArchiveTooLargeError, match=f"Refusing archive {tmp_path / 'a.tar.gz'}: its regular members"):
        read_member(archive, "results.json", max_bytes=5)
    assert read_member(archive, "results.json", max_members=2, max_bytes=12) == b"{}"


def test_pack_source_packs_a_directory_under_its_own_name_with_links_followed(tmp_path):
    source = tmp_path / "algorithm"
    source.mkdir()
    (source / "main.py").write_text("print(1)")
    (tmp_path / "shared.py").write_text("X = 1")
    (source / "shared.py").symlink_to(tmp_path / "shared.py")
    archive = tmp_path / "not" / "yet" / "source.tar.gz"  # its directory is made
    pack_source(source, archive)
    with tarfile.open(archive, "r:gz") as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert sorted(members) == ["algorithm", "algorithm/main.py", "algorithm/shared.py"]
        assert members["algorithm/shared.py"].isreg()  # the link's file, as Braket packs it
        assert tar.extractfile("algorithm/shared.py").read() == b"X = 1"
    pack_source(source / "main.py", archive)  # a single file, over the earlier archive
    with tarfile.open(archive, "r:gz") as tar:
        assert tar.getnames() == ["main.py"]


def test_pack_directory_makes_the_archives_directory(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "results.json").write_text("{}")
    archive = tmp_path / "a" / "b" / "model.tar.gz"
    pack_directory(tmp_path / "model", archive)
    assert read_member(archive, "results.json") == b"{}"
    pack_directory(tmp_path / "model", archive)  # again, over it
    assert read_member(archive, "results.json") == b"{}"


def test_a_hard_link_in_a_directory_names_its_target_from_the_archives_root(tmp_path):
    archive = _archive(tmp_path / "a.tar.gz", [regular("good.txt", b"root file"), directory("sub"),
                                               hardlink("sub/hard", "good.txt")])
    assert (safe_extract(archive, tmp_path / "out") / "sub" / "hard").read_bytes() == b"root file"


def test_read_member_takes_names_as_paths_and_a_file_at_its_limit(tmp_path):
    archive = _archive(tmp_path / "a.tar.gz", [directory("plots"), regular("plots/loss.csv", b"12345")])
    assert read_member(archive, "plots//loss.csv") == b"12345"
    assert read_member(archive, "plots/loss.csv", max_size=5) == b"12345"  # at the limit, not over it


@pytest.mark.parametrize("existing", [False, True], ids=["new-destination", "empty-destination"])
def test_a_write_that_fails_midway_leaves_the_destination_as_it_was(tmp_path, monkeypatch, existing):
    archive = _archive(tmp_path / "a.tar.gz", [directory("d"), regular("d/a.txt", b"a"), regular("b.txt", b"b"),
                                               regular("c.txt", b"c")])
    destination = tmp_path / "new" / "nested" / "out"  # its parents are made too
    if existing:
        destination.mkdir(parents=True)
    copies = []

    def disk_full_at_the_third_file(source, out, size):
        copies.append(size)
        if len(copies) == 3:
            raise OSError(28, "No space left on device")
        real_copy(source, out, size)

    real_copy = archive_module._copy
    monkeypatch.setattr(archive_module, "_copy", disk_full_at_the_third_file)
    with pytest.raises(OSError, match="No space left"):
        safe_extract(archive, destination)
    assert len(copies) == 3  # d/ and two files were written before the failure
    assert (list(destination.iterdir()) == []) if existing else not destination.exists()
    monkeypatch.setattr(archive_module, "_copy", real_copy)
    assert _tree(safe_extract(archive, destination)) == {"b.txt": b"b", "c.txt": b"c", "d": "dir", "d/a.txt": b"a"}


def _pax_named(name):
    """A member whose name comes from a PAX header, where a NUL can be (a ustar name ends at one)."""
    info, data = regular("placeholder")
    info.pax_headers = {"path": name}
    return info, data


@pytest.mark.parametrize("member, why", [
    (regular("dir\\evil.txt"), "its name has a backslash or a NUL"),
    (_pax_named("evil\0.txt"), "its name has a backslash or a NUL"),
    (regular("sub/../../evil.txt"), "its name has a '..' component"),
    (regular("./"), "it names the archive's root"),
], ids=["backslash", "nul", "dot-dot", "root-as-a-file"])
def test_a_name_that_is_no_plain_relative_path_is_refused_saying_why(tmp_path, member, why):
    archive = _archive(tmp_path / "model.tar.gz", [regular("good.txt"), member], format=tarfile.PAX_FORMAT)
    with tarfile.open(archive) as tar:
        assert tar.getmembers()[1].name == member[0].pax_headers.get("path", member[0].name)  # as written
    with pytest.raises(UnsafeArchiveError, match=rf"Refusing archive member .*: {re.escape(why)}\.$"):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()
