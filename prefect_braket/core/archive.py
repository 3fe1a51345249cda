"""The tar.gz archives a job travels in: its source going in, its `model.tar.gz` coming out.

A job's output is hostile input: its own code, or anyone who can write to its S3 bucket, decides
what `model.tar.gz` holds. So reading one is confined by construction, not by checking path text
(a chain of links that each look harmless, `a -> .`, `a/b -> ..`, `u -> b/..`, climbs out of any
directory once it exists on disk):

- Every member is checked, in a model of the archive's own namespace, before anything is written;
  nothing is written for an archive that is refused. Names are relative, without `..`; members
  are regular files, directories or links; a member never replaces an earlier one.
- No link is created on disk. A hard link, or a symlink whose target resolves (lexically, in that
  namespace) to an earlier regular member, is written as a copy of that member's data, so a job's
  results directory with an internal link still comes back usable. Any other link (absolute,
  leaving the archive, dangling, to a directory) is refused. With no links on disk, nothing an
  archive writes can be redirected by what it wrote before.
- Files go into a new or empty directory, opened one component at a time with `O_NOFOLLOW`, and
  created with `O_EXCL`: nothing already on disk can redirect a write either.
- What an archive expands to is bounded from its headers, before anything is written, and a
  refused bomb is not even decompressed past the header that gave it away:

| limit | keyword | environment variable | default |
|---|---|---|---|
| bytes of regular members, copies of links counted | `max_bytes` | `PREFECT_BRAKET_MAX_ARCHIVE_BYTES` | 10 GiB |
| members | `max_members` | `PREFECT_BRAKET_MAX_ARCHIVE_MEMBERS` | 100,000 |
| one member read into memory (`read_member`) | `max_size` | `PREFECT_BRAKET_MAX_RESULT_BYTES` | 1 GiB |

Example:
    ```python
    safe_extract(Path("model.tar.gz"), Path("out"))              # out/ must be new or empty
    read_member(Path("model.tar.gz"), "results.json")            # bytes; nothing extracted
    safe_extract(Path("big.tar.gz"), Path("out"), max_bytes=50 * 2**30)
    ```

Standard library only: the job container (`prefect_braket.container`) imports it.
"""

from __future__ import annotations

import gzip
import io
import os
import shutil
import stat
import tarfile
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO, Iterator

from prefect_braket.core.errors import PrefectBraketError

BYTES_VARIABLE = "PREFECT_BRAKET_MAX_ARCHIVE_BYTES"
MEMBERS_VARIABLE = "PREFECT_BRAKET_MAX_ARCHIVE_MEMBERS"
READ_VARIABLE = "PREFECT_BRAKET_MAX_RESULT_BYTES"
DEFAULT_MAX_BYTES = 10 * 2**30
DEFAULT_MAX_MEMBERS = 100_000
DEFAULT_MAX_READ_BYTES = 2**30
# The most read from the decompressed stream at once. tarfile reads a pax or GNU long-name header
# into memory whole, and a small gzip can declare one of gigabytes; real ones hold a path or two.
# Member data is read in steps of this size.
READ_STEP = 1 << 16

_SPECIAL = {tarfile.CHRTYPE: "a character device", tarfile.BLKTYPE: "a block device", tarfile.FIFOTYPE: "a fifo"}


class UnsafeArchiveError(PrefectBraketError, ValueError):
    """An archive was refused: a member would land outside its directory, is not a regular file,
    a directory or a link to an earlier file, or the archive is larger than allowed."""


class ArchiveTooLargeError(UnsafeArchiveError):
    """An archive expands to more bytes or members than allowed (see the module's limits)."""


def pack_source(source: Path, archive: Path) -> None:
    """Packs a file or directory as Braket does: gzip, links followed, under its own base name."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w:gz", dereference=True) as tar:
        tar.add(source, arcname=source.name)


def pack_directory(directory: Path, archive: Path) -> None:
    """Packs a directory's contents (not the directory itself), as `model.tar.gz` holds them.

    The archive holds regular files and directories only. A symlink whose target, resolved on
    disk through any chain of links, is a regular file inside `directory` goes in as a copy of
    that file; every other link (outside, dangling, to a directory) is left out, and so are
    devices, fifos and sockets. A job killed mid-run can leave its input-data links behind; they
    point outside, and following one would ship a file of this machine with the job's results.
    """
    archive.parent.mkdir(parents=True, exist_ok=True)
    tmp = archive.with_name(f".{archive.name}.{os.getpid()}.tmp")
    # dereference=True: files sharing an inode go in as files, not as hard links to each other.
    with tarfile.open(tmp, "w:gz", dereference=True) as tar:
        if directory.is_dir():
            root = Path(os.path.realpath(directory))
            pending = deque([(str(directory), "")])
            while pending:  # a loop, not recursion: a job can nest directories deeper than the stack
                path, prefix = pending.popleft()
                with os.scandir(path) as listing:
                    entries = sorted(listing, key=lambda entry: entry.name)
                for entry in entries:
                    name = prefix + entry.name
                    if entry.is_symlink():
                        target = Path(os.path.realpath(entry.path))
                        if target.is_relative_to(root) and target.is_file():
                            _pack_file(tar, str(target), name)
                    elif entry.is_dir(follow_symlinks=False):
                        status = entry.stat(follow_symlinks=False)
                        info = tarfile.TarInfo(name)
                        info.type = tarfile.DIRTYPE
                        info.mode, info.mtime = stat.S_IMODE(status.st_mode), status.st_mtime
                        tar.addfile(info)
                        pending.append((entry.path, name + "/"))
                    elif entry.is_file(follow_symlinks=False):
                        _pack_file(tar, entry.path, name)
    os.replace(tmp, archive)


def _pack_file(tar: tarfile.TarFile, path: str, name: str) -> None:
    # O_NONBLOCK: should a fifo have taken the file's place since it was listed, opening it must
    # not wait for a writer; fstat then leaves it out.
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with open(fd, "rb") as file:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            tar.addfile(tar.gettarinfo(arcname=name, fileobj=file), file)


def vacant(path: Path) -> bool:
    """Whether `path` is missing or an empty directory (not a link to one): where an archive may go."""
    if not os.path.lexists(path):
        return True
    return not path.is_symlink() and path.is_dir() and not any(os.scandir(path))


def safe_extract(
    archive: Path, destination: Path, *, max_bytes: int | None = None, max_members: int | None = None
) -> Path:
    """Extracts a tar.gz archive into `destination`, a new or empty directory; returns `destination`.

    Only directories and regular files are created; an internal link comes back as a copy of
    its file (the module's docstring says why, and which limits `max_bytes` and `max_members`
    raise). If anything fails while writing, what was written is removed.

    Raises:
        UnsafeArchiveError: a member was refused; the message names it and why. Nothing is written.
        ArchiveTooLargeError: the archive is over a limit; the message says how to raise it.
        FileExistsError: `destination` exists and is not an empty directory.
    """
    destination = Path(destination)
    if not vacant(destination):
        raise FileExistsError(
            f"{destination} is not an empty directory: archives are extracted only into a new or empty one, so "
            "that nothing already there (a link, an older file) can redirect or mix with their files. Extract "
            "somewhere new, or empty it first."
        )
    with _open(archive) as tar:
        _, steps = _plan(tar, archive, max_bytes, max_members)
        created = not destination.exists()
        destination.mkdir(parents=True, exist_ok=True)
        try:
            _write(tar, steps, destination)
        except BaseException:
            with os.scandir(destination) as listing:
                for entry in list(listing):
                    if entry.is_dir(follow_symlinks=False):
                        shutil.rmtree(entry.path)
                    else:
                        os.unlink(entry.path)
            if created:
                destination.rmdir()
            raise
    return destination


def read_member(
    archive: Path, name: str, *, max_size: int | None = None, max_bytes: int | None = None,
    max_members: int | None = None,
) -> bytes:
    """The data of one file of a tar.gz archive, read into memory; nothing is extracted.

    The whole archive is checked as `safe_extract` checks it, so what it would refuse is refused
    here too (with `max_bytes` and `max_members`); a link to the file resolves as it does there.
    The file may be at most `max_size` bytes (`$PREFECT_BRAKET_MAX_RESULT_BYTES`, 1 GiB).

    Raises:
        FileNotFoundError: the archive has no member `name`.
        IsADirectoryError: `name` is a directory in the archive.
        UnsafeArchiveError, ArchiveTooLargeError: as `safe_extract`.
    """
    limit = _limit(max_size, READ_VARIABLE, DEFAULT_MAX_READ_BYTES)
    with _open(archive) as tar:
        names, _ = _plan(tar, archive, max_bytes, max_members)
        parts = tuple(part for part in name.split("/") if part not in ("", "."))
        if parts not in names:
            raise FileNotFoundError(f"{archive} has no member {name!r}.")
        data = names[parts]
        if data is None:
            raise IsADirectoryError(f"{name!r} in {archive} is a directory, not a file.")
        if data.member.size > limit:
            raise ArchiveTooLargeError(
                f"Refusing member {name!r} of {archive}: it is {data.member.size:,} bytes, over the limit of "
                f"{limit:,} bytes for a file read into memory. If the archive is trusted, raise the limit: "
                f"max_size=..., or the environment variable {READ_VARIABLE}."
            )
        buffer = io.BytesIO()
        with _extract(tar, data.member) as source:
            _copy(source, buffer, data.member.size)
        return buffer.getvalue()


# -- reading -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _File:
    """What a path of the archive holds: the data of `member`, written first at `path`."""

    member: tarfile.TarInfo
    path: tuple[str, ...]


# A path of the archive, and what it holds: a _File, or None for a directory.
_Names = dict[tuple[str, ...], _File | None]


class _BoundedReads:
    """The decompressed stream as tarfile reads it, refusing any one read over `READ_STEP`."""

    def __init__(self, stream: io.BufferedIOBase, archive: Path):
        self.stream, self.archive = stream, archive

    def read(self, size: int) -> bytes:
        if size > READ_STEP:
            raise UnsafeArchiveError(
                f"Refusing archive {self.archive}: it has a header of {size:,} bytes; tar headers (pax, GNU "
                f"long names) hold a path or two, and at most {READ_STEP:,} bytes are read at once."
            )
        return self.stream.read(size)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self.stream.seek(offset, whence)

    def tell(self) -> int:
        return self.stream.tell()

    # tarfile's stubs ask every fileobj for these two; reading an archive it calls neither.
    def write(self, data: bytes) -> int:
        raise io.UnsupportedOperation(f"{self.archive} is open for reading only")

    def close(self) -> None:
        pass  # the stream is `_open`'s, which closes it


@contextmanager
def _open(archive: Path) -> Iterator[tarfile.TarFile]:
    with gzip.open(archive, "rb") as stream:
        with tarfile.open(fileobj=_BoundedReads(stream, Path(archive)), mode="r:") as tar:
            yield tar


def _limit(value: int | None, variable: str, default: int) -> int:
    if value is not None:
        return value
    text = os.environ.get(variable, "").strip()
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{variable}={text!r} is not a whole number: set it to one, such as {default}.") from None


def _refused(member: tarfile.TarInfo, why: str) -> UnsafeArchiveError:
    return UnsafeArchiveError(f"Refusing archive member {member.name!r}: {why}.")


def _plan(
    tar: tarfile.TarFile, archive: Path, max_bytes: int | None, max_members: int | None
) -> tuple[_Names, list[tuple[tuple[str, ...], _File | None]]]:
    """Checks every member in order; returns the archive's namespace and the steps that write it.

    Members are read one header at a time, so a refusal stops before the data after it is read.
    """
    max_bytes = _limit(max_bytes, BYTES_VARIABLE, DEFAULT_MAX_BYTES)
    max_members = _limit(max_members, MEMBERS_VARIABLE, DEFAULT_MAX_MEMBERS)
    names: _Names = {(): None}
    steps: list[tuple[tuple[str, ...], _File | None]] = []
    total = 0
    for count, member in enumerate(tar, 1):
        if count > max_members:
            raise ArchiveTooLargeError(
                f"Refusing archive {archive}: it has more than {max_members:,} members (member {count:,} is "
                f"{member.name!r}). If it is trusted, raise the limit: max_members=..., or the environment "
                f"variable {MEMBERS_VARIABLE}."
            )
        parts = _member_parts(member)
        if not (member.isreg() or member.isdir() or member.issym() or member.islnk()):
            kind = _SPECIAL.get(member.type, f"of tar type {member.type!r}")
            raise _refused(member, f"it is {kind}; only regular files, directories and links to files are extracted")
        if not parts:
            if member.isdir():
                continue  # "./", as `tar -C dir .` writes it
            raise _refused(member, "it names the archive's root")
        for depth in range(1, len(parts)):
            parent = parts[:depth]
            if parent not in names:
                names[parent] = None
                steps.append((parent, None))
            elif names[parent] is not None:
                raise _refused(member, f"its parent {'/'.join(parent)!r} is a file, not a directory")
        if parts in names:
            if member.isdir() and names[parts] is None:
                continue
            raise _refused(member, "it replaces an earlier member of the same name")
        if member.isdir():
            names[parts] = None
            steps.append((parts, None))
            continue
        if member.isreg():
            data = _File(member, parts)
        else:
            data = _link_target(names, parts[:-1] if member.issym() else (), member)
        total += data.member.size
        if total > max_bytes:
            raise ArchiveTooLargeError(
                f"Refusing archive {archive}: its regular members (copies of links counted) come to more than "
                f"{max_bytes:,} bytes: {total:,} by member {count:,}, {member.name!r}. If it is trusted, raise the "
                f"limit: max_bytes=..., or the environment variable {BYTES_VARIABLE}."
            )
        names[parts] = data
        steps.append((parts, data))
    return names, steps


def _member_parts(member: tarfile.TarInfo) -> tuple[str, ...]:
    name = member.name
    if name.startswith("/"):
        raise _refused(member, "its name is absolute")
    # A backslash separates paths on Windows, where these results may be read next.
    if "\\" in name or "\0" in name:
        raise _refused(member, "its name has a backslash or a NUL")
    parts = tuple(part for part in name.split("/") if part not in ("", "."))
    if ".." in parts:
        raise _refused(member, "its name has a '..' component")
    return parts


def _link_target(names: _Names, base: tuple[str, ...], member: tarfile.TarInfo) -> _File:
    """The earlier regular file a link names, resolved in the archive's namespace: a symlink from
    its own directory (`base`), a hard link from the archive's root."""
    link = member.linkname
    if link.startswith("/"):
        raise _refused(member, f"its link target {link!r} is absolute")
    path = base
    # Each step starts from a directory that exists in the archive; as no link to a directory is
    # ever accepted, `..` here is the real parent, and lexical resolution is the real one.
    for part in link.split("/"):
        if path not in names:
            raise _refused(member, f"its link target {link!r} names nothing earlier in the archive")
        if names[path] is not None:
            raise _refused(member, f"its link target {link!r} goes through a file")
        if part == "..":
            if not path:
                raise _refused(member, f"its link target {link!r} leaves the archive")
            path = path[:-1]
        elif part not in ("", "."):
            path = path + (part,)
    if path not in names:
        raise _refused(member, f"its link target {link!r} names nothing earlier in the archive")
    target = names[path]
    if target is None:
        raise _refused(member, f"its link target {link!r} is a directory; only links to files are extracted")
    return target


# -- writing -----------------------------------------------------------------------------------


def _write(tar: tarfile.TarFile, steps: list[tuple[tuple[str, ...], _File | None]], destination: Path) -> None:
    root = os.open(destination, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for parts, data in steps:
            parent = _open_directory(root, parts[:-1])
            try:
                if data is None:
                    os.mkdir(parts[-1], dir_fd=parent)
                    continue
                mode = (data.member.mode & 0o755) | 0o600  # no setuid, no writes by others
                fd = os.open(parts[-1], os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode, dir_fd=parent)
                with open(fd, "wb") as out:
                    if data.path == parts:
                        source = _extract(tar, data.member)
                    else:  # a link: a copy of the file already written for its target
                        first = _open_directory(root, data.path[:-1])
                        try:
                            source = open(os.open(data.path[-1], os.O_RDONLY | os.O_NOFOLLOW, dir_fd=first), "rb")
                        finally:
                            os.close(first)
                    with source:
                        _copy(source, out, data.member.size)
            finally:
                os.close(parent)
    finally:
        os.close(root)


def _open_directory(root: int, parts: tuple[str, ...]) -> int:
    """A descriptor of `root/parts`, opened one component at a time without following links."""
    fd = os.dup(root)
    for part in parts:
        try:
            child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
        finally:
            os.close(fd)
        fd = child
    return fd


def _extract(tar: tarfile.TarFile, member: tarfile.TarInfo) -> IO[bytes]:
    """The data of a regular member. tarfile answers None for members that are not files, which
    `_plan` refuses, so the error here is for a member `_plan` did not check."""
    source = tar.extractfile(member)
    if source is None:
        raise _refused(member, "it is not a regular file")
    return source


def _copy(source: IO[bytes], out: BinaryIO, size: int) -> None:
    remaining = size
    while remaining:
        chunk = source.read(min(READ_STEP, remaining))
        if not chunk:
            raise tarfile.ReadError(f"unexpected end of data: {remaining:,} of {size:,} bytes missing")
        out.write(chunk)
        remaining -= len(chunk)
