"""Crafted tar.gz archives: what a hostile job, or anyone who can write to its S3 bucket, could
put in `model.tar.gz`."""

import io
import json
import tarfile

from prefect_braket.jobs.data_persistence import SCHEMA_HEADER


def tar_gz(members, **options) -> bytes:
    """A tar.gz of `(TarInfo, data or None)` members, written as given (names and links unchecked)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", **options) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def regular(name, data=b"x"):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def directory(name):
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    return info, None


def symlink(name, target):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info, None


def hardlink(name, target):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.LNKTYPE, target
    return info, None


def special(name, kind):
    info = tarfile.TarInfo(name)
    info.type = kind
    return info, None


def results_json(values: dict):
    """A `results.json` member in Braket's persisted-data format."""
    document = {"braketSchemaHeader": SCHEMA_HEADER, "dataDictionary": values, "dataFormat": "plaintext"}
    return regular("results.json", json.dumps(document).encode())


def link_chain(victim="u0/tmp/victim.txt"):
    """Links that each resolve inside an empty directory, and together climb two levels out of
    it: `a` is the directory itself, so `a/b` is its parent, and `u0` the parent of that. The
    hard link then names a file out there, and the regular `h` after it writes into that file:
    extracted into `/tmp/prefect-braket-result-x/`, it overwrites `/tmp/victim.txt`."""
    return [symlink("a", "."), symlink("a/b", ".."), symlink("u0", "b/.."), hardlink("h", victim),
            regular("h", b"owned")]
