"""A job's files between the emulated AWS and the embedded engine: staged in from S3 before the
job starts, shipped out to CloudWatch Logs and S3 while it runs and when it ends.

In: the source archive, each input channel and, when the checkpoint URI already holds files (as
`copy_checkpoints_from_job` leaves them), the checkpoints the job starts from. Out: the log to
`/aws/braket/jobs` (stream `{name}/{id}/algo-1-{time}`), each new or changed checkpoint file to
the checkpoint URI as Braket syncs them, and `model.tar.gz` to `{output}/output/` once it ends.

CloudWatch Logs refuses an empty message, and one refused line would stop every later GetJob
of the job (it ships the log first): an empty line goes as a single space (`EMPTY_LINE`), so
the job's log keeps its blank lines as Braket's SDK prints them.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from prefect_braket.backends.local.engine import LocalEngine
from prefect_braket.core.arns import split_s3_uri
from prefect_braket.core.layout import LOG_GROUP
from prefect_braket.core.states import TERMINAL_STATES
from prefect_braket.endpoint.records import JobRecord

SOURCE_ARCHIVE = "source.tar.gz"
EMPTY_LINE = " "  # CloudWatch Logs' messages have at least one character


def stage_inputs(s3: Any, request: dict[str, Any], work: Path) -> dict[str, str]:
    """Downloads a CreateJob request's source archive, input channels and starting checkpoints
    into `work` (`source.tar.gz`, `input/{channel}/`, `checkpoints/`); returns the channels' directories."""
    bucket, key = split_s3_uri(request["algorithmSpecification"]["scriptModeConfig"]["s3Uri"])
    s3.download_file(bucket, key, str(work / SOURCE_ARCHIVE))
    channels = {}
    for channel in request.get("inputDataConfig") or []:
        target = work / "input" / channel["channelName"]
        download_prefix(s3, channel["dataSource"]["s3DataSource"]["s3Uri"], target)
        channels[channel["channelName"]] = str(target)
    checkpoints = request.get("checkpointConfig", {}).get("s3Uri")
    if checkpoints:  # copy_checkpoints_from_job put them in S3 before CreateJob; the job reads them at start
        download_prefix(s3, checkpoints, work / "checkpoints")
    return channels


def download_prefix(s3: Any, uri: str, target: Path) -> None:
    """Every object under an S3 prefix into `target`, keeping the key's path below the prefix (an
    object that is the prefix itself keeps its name)."""
    bucket, prefix = split_s3_uri(uri)
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            relative = item["Key"][len(prefix):].lstrip("/") or item["Key"].rsplit("/", 1)[-1]
            destination = target / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, item["Key"], str(destination))


class Shipper:
    """Ships what a job produces on the engine to CloudWatch Logs and S3, a step at a time."""

    def __init__(self, engine: LocalEngine, client: Callable[[str], Any]) -> None:
        self._engine = engine
        self._client = client

    def sync(self, record: JobRecord) -> dict[str, Any]:
        """Ships what is new (log lines, checkpoints, and once the job has ended its output);
        returns the job's metadata as the engine has it."""
        with record.lock:  # one job's uploads at a time; other calls go on meanwhile
            meta = self._engine.get_job(record.local_arn)
            if record.synced:
                return meta
            self._ship_log(record)
            self.ship_checkpoints(record)
            if meta["status"] in TERMINAL_STATES:
                self._ship_output(record)
                record.synced = True
            return meta

    def ship_checkpoints(self, record: JobRecord) -> None:
        """Copies new or changed checkpoint files to the job's checkpoint S3 URI. Called with the record's lock held."""
        if not record.checkpoint_uri:
            return
        bucket, prefix = split_s3_uri(record.checkpoint_uri)
        root = self._engine.checkpoint_directory(record.local_arn)
        for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")):
            name = path.relative_to(root).as_posix()
            try:  # a checkpoint is written whole and renamed into place: read each version once
                stamp = path.stat().st_mtime_ns
                if record.shipped_checkpoints.get(name) == stamp:
                    continue
                self._client("s3").put_object(Bucket=bucket, Key=f"{prefix}/{name}", Body=path.read_bytes())
            except FileNotFoundError:  # gone between listing and reading; the next pass sees what replaced it
                continue
            record.shipped_checkpoints[name] = stamp
            record.checkpoint_writes += 1

    def _ship_log(self, record: JobRecord) -> None:
        chunk = self._engine.read_log(record.local_arn, record.log_cursor)
        if not chunk.lines:
            return
        logs = self._client("logs")
        if record.log_cursor is None:  # the first lines: the group and stream may not exist yet
            for create in (lambda: logs.create_log_group(logGroupName=LOG_GROUP),
                           lambda: logs.create_log_stream(logGroupName=LOG_GROUP, logStreamName=record.log_stream)):
                try:
                    create()
                except logs.exceptions.ResourceAlreadyExistsException:
                    pass
        now_ms = int(time.time() * 1000)
        logs.put_log_events(logGroupName=LOG_GROUP, logStreamName=record.log_stream,
                            logEvents=[{"timestamp": now_ms, "message": line or EMPTY_LINE} for line in chunk.lines])
        record.log_cursor = chunk.cursor

    def _ship_output(self, record: JobRecord) -> None:
        archive = self._engine.output_archive(record.local_arn)
        if archive.exists():  # a job whose instance was lost ends without one
            bucket, prefix = split_s3_uri(record.output_uri)
            self._client("s3").upload_file(str(archive), bucket, f"{prefix}/output/model.tar.gz")
