"""The tar.gz archives a job travels in: its source going in, its `model.tar.gz` coming out.

Extraction is safe by construction: members with absolute paths, `..` components, links that
point outside the target, and device files are refused before anything is written.
"""

from __future__ import annotations

import os
import tarfile
from pathlib import Path, PurePosixPath


class UnsafeArchiveError(ValueError):
    """An archive member would land outside the directory it is extracted into."""


def pack_source(source: Path, archive: Path) -> None:
    """Packs a file or directory as Braket does: gzip, links followed, under its own base name."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w:gz", dereference=True) as tar:
        tar.add(source, arcname=source.name)


def pack_directory(directory: Path, archive: Path) -> None:
    """Packs a directory's contents (not the directory itself), as `model.tar.gz` holds them."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    tmp = archive.with_name(f".{archive.name}.{os.getpid()}.tmp")
    root = directory.resolve() if directory.exists() else directory

    def inside_only(member: tarfile.TarInfo) -> tarfile.TarInfo | None:
        # A job killed mid-run can leave its input-data links behind; they point outside.
        if member.issym() or member.islnk():
            target = (root / PurePosixPath(member.name).parent / member.linkname).resolve()
            if PurePosixPath(member.linkname).is_absolute() or not target.is_relative_to(root):
                return None
        return member

    with tarfile.open(tmp, "w:gz") as tar:
        for entry in sorted(directory.iterdir()) if directory.exists() else []:
            tar.add(entry, arcname=entry.name, filter=inside_only)
    os.replace(tmp, archive)


def _check_member(member: tarfile.TarInfo, root: Path) -> None:
    name = PurePosixPath(member.name)
    if name.is_absolute() or member.name.startswith(("/", "\\")) or ".." in name.parts:
        raise UnsafeArchiveError(f"Refusing archive member {member.name!r}: it leaves the target directory.")
    if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
        raise UnsafeArchiveError(f"Refusing archive member {member.name!r}: only files, directories and links.")
    if member.issym() or member.islnk():
        link = PurePosixPath(member.linkname)
        base = root if member.islnk() else (root / name).parent
        target = (base / link).resolve() if not link.is_absolute() else Path(link)
        if not target.is_relative_to(root):
            raise UnsafeArchiveError(
                f"Refusing archive member {member.name!r}: its link {member.linkname!r} points outside."
            )


def safe_extract(archive: Path, destination: Path) -> Path:
    """Extracts a tar archive into `destination` after checking every member; returns `destination`."""
    destination.mkdir(parents=True, exist_ok=True)
    root = destination.resolve()
    with tarfile.open(archive) as tar:
        members = tar.getmembers()
        for member in members:
            _check_member(member, root)
        tar.extractall(root, members=members, filter="tar")
    return destination
