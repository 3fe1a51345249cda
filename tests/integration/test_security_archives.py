"""Hostile job output, end to end: a job's links in its results directory, a crafted
`model.tar.gz` on the embedded engine and in S3 behind the local endpoint, and where downloads
land. Nothing may be written outside the directories the calls own.

A crafted archive's link chain climbs two levels out of the directory it is extracted into
(`helpers.archives.link_chain`); the previous code extracted `results.json` into
`{tempdir}/prefect-braket-result-x/`, so the file the chain overwrote there was
`{tempdir}/victim.txt`. These tests point `tempfile` at a sandbox and put the victim there.
"""

import os
import tempfile

import boto3
import pytest

from helpers.archives import link_chain, regular, results_json, tar_gz
from prefect_braket import hybrid_job
from prefect_braket.core.archive import ArchiveTooLargeError, UnsafeArchiveError

SV1 = "arn:aws:braket:::device/quantum-simulator/amazon/sv1"
ROLE = "arn:aws:iam::123456789012:role/service-role/AmazonBraketJobsExecutionRole"
LOCAL_SV = "local:braket/braket_sv"


def _tree(root):
    """Every path under `root`: file contents, "dir", or "link"."""
    return {p.relative_to(root).as_posix(): "link" if p.is_symlink() else "dir" if p.is_dir() else p.read_bytes()
            for p in sorted(root.rglob("*"))}


def _sandbox(tmp_path, monkeypatch):
    """Points `tempfile` at a directory standing in for /tmp; returns the file there a crafted
    chain aims at. Called once the job is done, so that only the calls under test use it."""
    victim = tmp_path / "sandbox" / "tmp" / "victim.txt"
    victim.parent.mkdir(parents=True)
    victim.write_text("original")
    monkeypatch.setattr(tempfile, "tempdir", str(victim.parent))
    return victim


def _refuses_crafted_archives(job, put_archive, victim, downloads, monkeypatch):
    """What `result()` and `download_result()` do with each crafted archive in turn."""
    put_archive(tar_gz([results_json({"ok": "forged"}), *link_chain("u0/tmp/victim.txt")]))
    with pytest.raises(UnsafeArchiveError, match="member 'a': its link target '.' is a directory"):
        job.result()
    with pytest.raises(UnsafeArchiveError, match="member 'a'"):
        job.download_result(downloads)
    assert victim.read_text() == "original"
    assert [p.name for p in victim.parent.iterdir()] == ["victim.txt"]  # every temporary directory removed
    assert list(downloads.iterdir()) == []  # no half-extracted target, nothing beside it

    put_archive(tar_gz([results_json({"bomb": True}), regular("zeros.bin", bytes(4 << 20))]))  # 4 MiB in a few KB
    monkeypatch.setenv("PREFECT_BRAKET_MAX_ARCHIVE_BYTES", str(1 << 20))
    with pytest.raises(ArchiveTooLargeError, match="more than 1,048,576 bytes.*PREFECT_BRAKET_MAX_ARCHIVE_BYTES"):
        job.result()
    with pytest.raises(ArchiveTooLargeError, match="max_bytes="):
        job.download_result(downloads)
    assert list(downloads.iterdir()) == []
    # A limit raised by the keyword or the environment lets the same archive through.
    assert (job.download_result(downloads, max_bytes=8 << 20) / "zeros.bin").stat().st_size == 4 << 20
    monkeypatch.setenv("PREFECT_BRAKET_MAX_ARCHIVE_BYTES", str(8 << 20))
    assert job.result() == {"bomb": True}
    assert [p.name for p in victim.parent.iterdir()] == ["victim.txt"]


def _ok():
    return {"ok": True}


saves = hybrid_job(device=LOCAL_SV)(_ok)


def test_a_crafted_model_tar_gz_on_the_engine_is_refused_and_writes_nothing_outside(engine, tmp_path, monkeypatch):
    job = saves()
    assert job.result() == {"ok": True}
    archive = engine.job_directory(job.arn) / "data" / "output" / "model.tar.gz"
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    _refuses_crafted_archives(job, archive.write_bytes, _sandbox(tmp_path, monkeypatch), downloads, monkeypatch)


def test_crafted_archives_in_s3_are_refused_through_the_local_endpoint(endpoint, tmp_path, monkeypatch):
    from prefect_braket.backends.aws.backend import AwsBackend

    session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
    backend = AwsBackend(session=session, region="us-east-1", endpoint_url=endpoint)
    job = hybrid_job(device=SV1, backend=backend, role_arn=ROLE)(_ok)()
    assert job.result(poll_interval_seconds=0.5) == {"ok": True}  # the endpoint has uploaded its own archive
    bucket, _, prefix = job.metadata()["outputDataConfig"]["s3Path"].removeprefix("s3://").rstrip("/").partition("/")

    def put_archive(data):
        backend.client("s3").put_object(Bucket=bucket, Key=f"{prefix}/output/model.tar.gz", Body=data)

    downloads = tmp_path / "downloads"
    downloads.mkdir()
    _refuses_crafted_archives(job, put_archive, _sandbox(tmp_path, monkeypatch), downloads, monkeypatch)


@hybrid_job(device=LOCAL_SV)
def links_out(victim: str):
    """Builds the chain on disk in its results directory (its working directory), with links to
    the root, to a file outside, and to a file of its own."""
    from pathlib import Path

    Path("data.txt").write_text("inside")
    Path("plots").mkdir()
    Path("plots/loss.csv").write_text("1,0.5\n")
    for name, target in [("a", "."), ("b", ".."), ("u0", "b/.."), ("root", "/"), ("up", "../" * 40),
                         ("outside", victim), ("alias", "data.txt"), ("plots/latest", "../alias")]:
        os.symlink(target, name)
    os.mkfifo("pipe")
    return {"ok": True}


def test_a_job_whose_results_link_out_and_to_the_root_gets_back_its_own_files_only(engine, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("original")
    job = links_out(victim=str(victim))
    assert job.result() == {"ok": True}
    downloads = tmp_path / "downloads"
    downloaded = job.download_result(downloads)
    tree = _tree(downloaded)
    # Links inside come back as copies; the chain, the root, the file outside and the fifo not at all.
    assert {name: value for name, value in tree.items() if name != "results.json"} == {
        "alias": b"inside", "data.txt": b"inside", "plots": "dir", "plots/latest": b"inside",
        "plots/loss.csv": b"1,0.5\n"}
    assert victim.read_text() == "original"
    assert list(downloads.iterdir()) == [downloaded]


def test_download_result_lands_in_the_package_home_not_the_working_directory(engine, tmp_path, monkeypatch):
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.chdir(project)
    job = saves()
    downloaded = job.download_result()
    assert downloaded == engine.root / "downloads" / job.name  # engine.root is $PREFECT_BRAKET_HOME here
    assert (downloaded / "results.json").is_file()
    assert (engine.root / "downloads").stat().st_mode & 0o777 == 0o700
    assert list(project.iterdir()) == []


def _writes(filename: str):
    from pathlib import Path

    Path(filename).write_text(filename)
    return {"wrote": filename}


writes_as_same_name = hybrid_job(device=LOCAL_SV, job_name="same-name")(_writes)


def test_same_named_jobs_never_merge_their_downloads(engine, tmp_path):
    first, second = writes_as_same_name(filename="first.txt"), writes_as_same_name(filename="second.txt")
    assert first.name == second.name == "same-name" and first.arn != second.arn
    downloads = tmp_path / "downloads"
    target = first.download_result(downloads)
    with pytest.raises(FileExistsError, match=f"{target} already exists and is not empty.*another extract_to, or "
                                              f"remove {target}"):
        second.download_result(downloads)
    assert sorted(os.listdir(target)) == ["first.txt", "results.json"]
    assert os.listdir(downloads) == ["same-name"]  # nothing left from the refused download
    assert sorted(os.listdir(second.download_result(tmp_path / "elsewhere"))) == ["results.json", "second.txt"]
    (tmp_path / "prepared" / "same-name").mkdir(parents=True)  # an empty target is taken
    assert sorted(os.listdir(second.download_result(tmp_path / "prepared"))) == ["results.json", "second.txt"]
