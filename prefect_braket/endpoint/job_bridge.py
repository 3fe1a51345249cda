"""Braket jobs on the embedded engine: CreateJob onto `LocalEngine`, and the jobs' life there as
GetJob, CancelJob, SearchJobs and GetDevice show it.

The engine keeps each job's state and runs it (one running job per QPU, the others QUEUED behind
it); it is used through its public methods only. A job runs with the `s3://` locations of its
CreateJob in its environment, as Braket's container gives them (`core.layout.container_s3_variables`),
and with this endpoint as its AWS. The bridge keeps a `JobRecord` per job and ships the job's
files (`job_files.Shipper`) from a background thread, and on every GetJob so that what GetJob
shows is in CloudWatch and S3 already. The same thread kills the instances that
`Faults.job_deaths` asks for.

Jobs that run elsewhere (on the embedded engine of a client, `local=True`) register their token
(`register_external`), so that their tasks to their device get its priority here as well.
"""

from __future__ import annotations

import tempfile
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from prefect_braket.backends.local.engine import LocalEngine
from prefect_braket.core.layout import container_s3_variables
from prefect_braket.core.spec import JobSpec, StoppingCondition
from prefect_braket.core.states import TERMINAL_STATES
from prefect_braket.endpoint.devices import DeviceModel
from prefect_braket.endpoint.errors import Conflict, ValidationError
from prefect_braket.endpoint.job_files import SOURCE_ARCHIVE, Shipper, stage_inputs
from prefect_braket.endpoint.records import (
    POSITION_CAP,
    JobRecord,
    JobRegistry,
    capped,
    job_arn,
)
from prefect_braket.endpoint.shared import SharedState

TEND_INTERVAL_SECONDS = 0.25
DEFAULT_MAX_RUNTIME_SECONDS = 432000  # Braket's default stopping condition: five days


@dataclass(frozen=True)
class ExternalJob:
    """A job that runs elsewhere (a client's embedded engine), whose token has priority here."""

    job_arn: str
    device_arn: str
    running: bool


class JobBridge:
    """The endpoint's jobs, run on one embedded engine."""

    def __init__(self, shared: SharedState, client: Callable[[str], Any], engine: LocalEngine) -> None:
        self._shared = shared
        self._client = client
        self._engine = engine
        self._shipper = Shipper(engine, client)
        self.jobs = JobRegistry()
        self._external: dict[str, ExternalJob] = {}  # by job token
        threading.Thread(target=self._tend, daemon=True, name="endpoint-jobs").start()

    # -- CreateJob ------------------------------------------------------------------------------

    def create(self, request: dict[str, Any], region: str) -> str:
        """Creates the job a CreateJob request asks for (or finds the one its client token made); its ARN."""
        token = request.get("clientToken")
        with self._shared.lock:
            if (earlier := self.jobs.created_by(token)) is not None:
                self._shared.stats.jobs_deduplicated += 1
                return earlier
        device = self._shared.device_in(request["deviceConfig"]["device"], region, missing=ValidationError)
        self._shared.check_available(device)
        with tempfile.TemporaryDirectory(prefix="braket-endpoint-job-") as work:  # the engine copies what it needs
            local = self._start(request, region, device, Path(work))
        record = self._record(request, region, device, local)
        with self._shared.lock:
            if (earlier := self.jobs.created_by(token)) is not None:  # a racing call with the token got there first
                self._shared.stats.jobs_deduplicated += 1
                return earlier
            self.jobs.add(record, token)
            self._shared.stats.jobs_created += 1
        return record.arn

    def _start(self, request: dict[str, Any], region: str, device: DeviceModel, work: Path) -> str:
        """Stages the job's files from S3 in `work` and creates the job on the engine, with the
        variables of Braket's container for its S3 locations and region; its engine ARN."""
        channels = stage_inputs(self._client("s3"), request, work)
        spec = JobSpec(
            job_name=request["jobName"], device=device.arn, source_module=work / SOURCE_ARCHIVE,
            entry_point=request["algorithmSpecification"]["scriptModeConfig"]["entryPoint"],
            hyperparameters=request.get("hyperParameters") or {}, input_data=channels, tags=request.get("tags") or {},
            stopping_condition=StoppingCondition(
                request.get("stoppingCondition", {}).get("maxRuntimeInSeconds", DEFAULT_MAX_RUNTIME_SECONDS)),
        )
        environment = container_s3_variables(request["jobName"], request["algorithmSpecification"]["scriptModeConfig"]
                                             ["s3Uri"], request["outputDataConfig"]["s3Path"])
        # The engine's own claim on the client token makes two racing calls create one job.
        return self._engine.create_job(spec, client_token=request.get("clientToken"),
                                       initial_checkpoints=work / "checkpoints",
                                       environment={**environment, "AWS_DEFAULT_REGION": region})

    def _record(self, request: dict[str, Any], region: str, device: DeviceModel, local: str) -> JobRecord:
        job_id = uuid.uuid4().hex  # the endpoint's name for the job; the engine has its own (`local_arn`)
        return JobRecord(arn=job_arn(region, job_id), local_arn=local, job_token=self._engine.job_token(local),
                         request=request, device_arn=device.arn,
                         log_stream=f"{request['jobName']}/{job_id}/algo-1-{int(time.time())}")

    # -- what the API asks of jobs ----------------------------------------------------------------

    def find(self, arn: str) -> JobRecord:
        with self._shared.lock:
            return self.jobs.get(arn)

    def answer(self, arn: str, queue_info: bool) -> dict[str, Any]:
        """GetJob's answer, once what it shows is shipped."""
        record = self.find(arn)
        return record.answer(self._shipper.sync(record), queue_info)

    def cancel(self, arn: str) -> dict[str, Any]:
        status = self._engine.cancel_job(self.find(arn).local_arn)
        if status in TERMINAL_STATES:
            raise Conflict(f"Job {arn} has already ended {status}.")
        return {"jobArn": arn, "cancellationStatus": "CANCELLING"}

    def summaries(self, region: str) -> list[dict[str, Any]]:
        """What SearchJobs in `region` searches."""
        with self._shared.lock:
            records = self.jobs.in_region(region)
        return [record.summary(self._engine.get_job(record.local_arn)) for record in records]

    def priority_for(self, job_token: str | None, device_arn: str) -> tuple[str | None, bool]:
        """The job a task's job token belongs to, and whether the task gets priority on this
        device: it does while the job runs and the device is the job's. A token this endpoint
        neither issued nor was given (`register_external`) gives neither."""
        with self._shared.lock:
            record = self.jobs.holding(job_token)
            external = self._external.get(job_token) if job_token else None
        if record is None:
            if external is None:
                return None, False
            return external.job_arn, external.running and external.device_arn == device_arn
        running = self._engine.get_job(record.local_arn)["status"] == "RUNNING"
        return record.arn, running and record.device_arn == device_arn

    def register_external(self, job_token: str, job_arn: str, device_arn: str, running: bool = True) -> None:
        """Gives the token of a job that runs elsewhere (on a client's embedded engine) its
        device's priority while `running`, as this endpoint's own jobs have it."""
        for name, value in (("job_token", job_token), ("job_arn", job_arn), ("device_arn", device_arn)):
            if not isinstance(value, str) or not value:
                raise ValueError(f"{name}={value!r}: a job token's registration names it, as text.")
        if not isinstance(running, bool):
            raise ValueError(f"running={running!r}: true while the job runs, false once it has ended.")
        with self._shared.lock:
            self._external[job_token] = ExternalJob(job_arn, device_arn, running)

    def external_jobs(self) -> list[dict[str, Any]]:
        """The jobs registered from elsewhere, without their tokens."""
        with self._shared.lock:
            return [asdict(job) for job in self._external.values()]

    def jobs_queue_info(self, device_arn: str) -> dict[str, str]:
        """GetDevice's JOBS_QUEUE entry: the jobs waiting for the device, and those running on it."""
        with self._shared.lock:
            locals_ = [r.local_arn for r in self.jobs.by_arn.values() if r.device_arn == device_arn]
        statuses = [self._engine.get_job(local)["status"] for local in locals_]
        queued, running = statuses.count("QUEUED"), statuses.count("RUNNING")
        size = capped(queued, POSITION_CAP) + (f" ({running} prioritized job(s) running)" if running else "")
        return {"queue": "JOBS_QUEUE", "queueSize": size}

    # -- in the background ------------------------------------------------------------------------

    def _tend(self) -> None:
        """Ships the files of jobs not yet synced and kills the instances `Faults.job_deaths` asks for."""
        while True:
            time.sleep(TEND_INTERVAL_SECONDS)
            with self._shared.lock:
                records = [r for r in self.jobs.by_arn.values() if not r.synced]
            for record in records:
                try:
                    meta = self._shipper.sync(record)
                    if meta["status"] == "RUNNING" and "startedAt" in meta and not record.killed:
                        self._maybe_kill(record, meta)
                except Exception:  # a passing S3 or engine hiccup: the next pass tries again
                    continue

    def _maybe_kill(self, record: JobRecord, meta: dict[str, Any]) -> None:
        running_seconds = (datetime.now(timezone.utc) - meta["startedAt"]).total_seconds()
        with self._shared.lock:
            if not self._shared.faults.take_job_death(meta["jobName"], running_seconds, record.checkpoint_writes):
                return
            self._shared.stats.jobs_killed += 1
            record.killed = True
        with record.lock:
            self._shipper.ship_checkpoints(record)  # what a continuously syncing instance had uploaded
        self._engine.kill_instance(record.local_arn)
