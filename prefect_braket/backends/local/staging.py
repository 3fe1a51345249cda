"""A new job's files and first record, as Braket's container would find them when the job starts.

`stage` puts them in the job's directory step by step (source, input data, checkpoints, the
instance's hyperparameters, results directory and log), and makes them its owner's alone however
readable their sources were; `new_record` is the job.json that describes them.
"""

from __future__ import annotations

import json
import secrets
import shutil
from pathlib import Path

from prefect_braket.backends.local.record import EngineState, JobRecord, ScriptMode, now
from prefect_braket.backends.local.store import JobStore, make_private
from prefect_braket.core.archive import pack_source
from prefect_braket.core.spec import JobSpec


def stage(spec: JobSpec, job: JobStore, earlier: JobStore | None, initial_checkpoints: Path | None) -> None:
    """Puts a new job's files in place; `earlier` is the job whose checkpoints it starts from, and
    `initial_checkpoints` a directory of checkpoints copied in after those."""
    checkpoints = [earlier.checkpoints] if earlier else []
    if initial_checkpoints is not None and initial_checkpoints.is_dir():
        checkpoints.append(initial_checkpoints)
    _stage_source(spec, job)
    _stage_input_data(spec, job)
    _stage_checkpoints(job, checkpoints)
    _stage_instance(spec, job)
    make_private(job.dir)


def _stage_source(spec: JobSpec, job: JobStore) -> None:
    if Path(spec.source_module).name.endswith(".tar.gz"):
        job.source_archive.parent.mkdir()
        shutil.copyfile(spec.source_module, job.source_archive)
    else:
        pack_source(spec.source_module, job.source_archive)


def _stage_input_data(spec: JobSpec, job: JobStore) -> None:
    for channel, location in spec.input_data.items():
        # As Braket's container sees it: a file inside the channel, or a directory's contents.
        source = Path(location)
        channel_dir = job.data_dir / channel
        if source.is_dir():
            shutil.copytree(source, channel_dir)
        else:
            channel_dir.mkdir(parents=True)
            shutil.copy2(source, channel_dir / source.name)


def _stage_checkpoints(job: JobStore, sources: list[Path]) -> None:
    job.checkpoints.mkdir()
    for source in sources:  # in order: a later file of the same name replaces an earlier one
        shutil.copytree(source, job.checkpoints, dirs_exist_ok=True)


def _stage_instance(spec: JobSpec, job: JobStore) -> None:
    job.hyperparameters_file.parent.mkdir(parents=True)
    job.hyperparameters_file.write_text(json.dumps(spec.hyperparameters))
    job.results_dir.mkdir()
    job.log_file.touch()


def new_record(spec: JobSpec, job: JobStore, arn: str, ticket: Path | None,
               environment: dict[str, str] | None = None) -> JobRecord:
    """A new job's record: QUEUED, or waiting for its QPU behind `ticket`, with a job token of its
    own and the `environment` its caller set for its process."""
    record = JobRecord(
        job_arn=arn,
        job_name=spec.job_name,
        status="QUEUED",
        created_at=now(),
        role_arn=spec.role_arn or "",
        script=ScriptMode(spec.entry_point, str(job.source_archive)),
        input_channels={channel: str(job.data_dir / channel) for channel in spec.input_data},
        instance_config=spec.instance_config,
        output_path=str(job.data_dir),
        checkpoint_path=str(job.checkpoints),
        stopping_condition=spec.stopping_condition,
        device=spec.device,
        hyperparameters=dict(spec.hyperparameters),
        tags=dict(spec.tags),
        reservation_arn=spec.reservation_arn,
        engine=EngineState(job_token=secrets.token_hex(32), queue_ticket=ticket, environment=dict(environment or {})),
    )
    if ticket is not None:
        record.add_event("WAITING_FOR_PRIORITY", f"Waiting for {spec.device}, which runs one job at a time.")
    else:
        record.add_event("QUEUED_FOR_EXECUTION")
    return record
