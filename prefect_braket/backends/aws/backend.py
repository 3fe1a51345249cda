"""The Amazon Braket backend: jobs and quantum tasks on AWS, through boto3, s3fs and CloudWatch Logs.

It creates jobs exactly as Braket's SDK does (the same CreateJob request, S3 layout, default
bucket and container images), and behaves better where that client is weak: the client token
is the caller's (a retried submission returns the same job), results are downloaded into a
file the call owns and read confined (`prefect_braket.core.archive`), a failed job is an error
rather than `{}`, logs are read even before their group exists, and task results are fetched
concurrently.

`AwsBackend` is the `JobBackend`; what it stands on is in modules of their own: `session`
(clients per region, the S3 file system, default bucket and execution role), `images` (Braket's
job images), `logs` (CloudWatch Logs in bounded chunks) and `quantum_tasks`. Clients are made in
the region of the device (or job) ARN.
"""

from __future__ import annotations

import json
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Sequence

import boto3
from botocore.exceptions import ClientError

from prefect_braket.backends.aws.images import job_image
from prefect_braket.backends.aws.logs import read_job_log
from prefect_braket.backends.aws.quantum_tasks import Finished, QuantumTasks
from prefect_braket.backends.aws.session import AwsConfigurationError, AwsSession
from prefect_braket.backends.base import REPLACES_TAG, LogChunk, replacement_name
from prefect_braket.core.archive import pack_source
from prefect_braket.core.arns import device_region, is_s3_uri, resource_region
from prefect_braket.core.spec import DEFAULT_CHECKPOINT_PATH, JobSpec
from prefect_braket.core.states import TERMINAL_STATES
from prefect_braket.jobs.data_persistence import checkpoint_name_for

# What a CreateJob request of a failed job, as GetJob echoes it, carries over to its replacement.
REPLAYED_FIELDS = ("roleArn", "algorithmSpecification", "instanceConfig", "deviceConfig", "hyperParameters",
                   "stoppingCondition", "inputDataConfig", "associations")


class AwsBackend:
    """Jobs and quantum tasks on Amazon Braket; implements `prefect_braket.backends.base.JobBackend`.

    Args:
        session: The boto3 session (credentials); the default chain when None.
        region: Where clients go; a device's or job's ARN region takes precedence.
        endpoint_url: One endpoint for every service (a local emulator); `AWS_ENDPOINT_URL` by default.
        braket_client: A ready Braket client (tests attach botocore's Stubber to one).
    """

    name = "aws"
    bills_instances = True  # a job's instances are billed by the hour, as SageMaker's

    def __init__(
        self, session: boto3.Session | None = None, region: str | None = None,
        endpoint_url: str | None = None, braket_client: Any = None,
    ):
        self.aws = AwsSession(session, region, endpoint_url, braket_client)
        self.quantum_tasks = QuantumTasks(self.aws)

    def __getstate__(self) -> dict[str, Any]:
        # Sessions and clients do not pickle; the receiving process uses its own credential chain.
        return {"region": self.aws.region, "endpoint_url": self.aws.endpoint_url}

    def __setstate__(self, state: dict[str, Any]) -> None:
        type(self).__init__(self, region=state["region"], endpoint_url=state["endpoint_url"])

    def __repr__(self) -> str:
        endpoint = f", endpoint_url={self.aws.endpoint_url!r}" if self.aws.endpoint_url else ""
        return f"AwsBackend(region={self.aws.region!r}{endpoint})"

    # -- the session's, for callers of the backend ---------------------------------------------------

    def client(self, service: str, region: str | None = None) -> Any:
        return self.aws.client(service, region)

    def braket(self, region: str | None = None) -> Any:
        return self.aws.braket(region)

    @property
    def fs(self) -> Any:
        """The S3 file system, with current credentials (`AwsSession.fs`)."""
        return self.aws.fs

    def default_bucket(self, region: str | None = None) -> str:
        """`AMZN_BRAKET_OUT_S3_BUCKET`, else `amazon-braket-{region}-{account}`, created if missing."""
        return self.aws.default_bucket(region)

    def role_arn(self, given: str | None) -> str:
        """The jobs' execution role: given, `BRAKET_JOBS_ROLE_ARN`, or looked up once in IAM."""
        return self.aws.role_arn(given)

    # -- JobBackend: creating --------------------------------------------------------------------

    def check_dependencies(self, requirements: list[str]) -> None:
        """Nothing to check here: Braket's container installs a job's requirements.txt."""

    def create_job(self, spec: JobSpec, client_token: str | None = None) -> str:
        """Creates the job; with a client token, at most once, even across crashes and processes.

        The request and then the job's ARN are recorded in S3 under the token. A retry finds the
        ARN and returns it; a retry after a lost CreateJob response sends the same request with the
        same token again, which Braket answers with the same job.
        """
        region = device_region(spec.device) or self.aws.region
        if not client_token:
            return self.braket(region).create_job(**self.create_job_request(spec))["jobArn"]
        return self._create_once(region, client_token, lambda: self.create_job_request(spec, client_token))

    def create_job_request(self, spec: JobSpec, client_token: str | None = None) -> dict[str, Any]:
        """Uploads the job's code and data, then returns Braket's CreateJob request for it.

        What Braket would refuse is refused first, before anything is uploaded; then the job's
        files go to its S3 prefix, `jobs/{name}/{milliseconds}`, as Braket's SDK lays them out."""
        region = device_region(spec.device) or self.aws.region
        image = job_image(spec, region, self.client("ecr", region))
        self._check_device(spec.device, region)
        role = self.role_arn(spec.role_arn)
        root = f"s3://{self.default_bucket(region)}/jobs/{spec.job_name}/{int(time.time() * 1000)}"
        source = self._upload_source(spec, f"{root}/script/source.tar.gz")
        channels = self._upload_input_data(spec, f"{root}/data")
        checkpoints = self._checkpoint_config(spec, f"{root}/checkpoints")
        output = {"s3Path": spec.output_data_config.s3Path or f"{root}/data"}
        if spec.output_data_config.kmsKeyId:
            output["kmsKeyId"] = spec.output_data_config.kmsKeyId
        return _create_job_request(spec, image, role, source, channels, checkpoints, output,
                                   client_token or str(uuid.uuid4()))

    def _check_device(self, device_arn: str, region: str) -> None:
        """Refuses a device Braket does not have, or has retired, before anything is uploaded."""
        try:
            status = self.braket(region).get_device(deviceArn=device_arn)["deviceStatus"]
        except ClientError as error:
            if error.response["Error"]["Code"] not in ("ResourceNotFoundException", "ValidationException"):
                raise
            raise AwsConfigurationError(
                f"Braket has no device {device_arn} in {region} ({error.response['Error'].get('Message', '')}): "
                "check the ARN (BraketDevice(...).status(), or the devices page of the Braket console)."
            ) from None
        if status == "RETIRED":
            raise AwsConfigurationError(
                f"Device {device_arn} is RETIRED: a job for it would never run; choose another.")

    def _upload_source(self, spec: JobSpec, uri: str) -> str:
        """Uploads the job's source archive (packed here unless it is a `.tar.gz`) to `uri`."""
        if spec.source_module.name.endswith(".tar.gz"):
            self.fs.put_file(str(spec.source_module), uri)
            return uri
        with tempfile.TemporaryDirectory(prefix="prefect-braket-source-") as tmp:
            archive = Path(tmp) / "source.tar.gz"
            pack_source(spec.source_module, archive)
            self.fs.put_file(str(archive), uri)
        return uri

    def _upload_input_data(self, spec: JobSpec, data_uri: str) -> list[dict[str, Any]]:
        """The job's input channels: S3 locations as they are, local files and directories uploaded
        under `data_uri/{channel}/`."""
        channels = []
        for channel, location in spec.input_data.items():
            uri = str(location)
            if not is_s3_uri(location):
                source = Path(location)
                uri = f"{data_uri}/{channel}/{source.name}"
                self.fs.put(str(source), uri, recursive=source.is_dir())
            channels.append({"channelName": channel, "dataSource": {"s3DataSource": {"s3Uri": uri}}})
        return channels

    def _checkpoint_config(self, spec: JobSpec, default_uri: str) -> dict[str, str]:
        """The job's checkpointConfig, with the checkpoints of `copy_checkpoints_from_job` copied in."""
        uri = spec.checkpoint_config.s3Uri or default_uri
        if spec.copy_checkpoints_from_job:
            self.aws.copy_prefix(self.get_job(spec.copy_checkpoints_from_job)["checkpointConfig"]["s3Uri"], uri)
        return {"localPath": spec.checkpoint_config.localPath or DEFAULT_CHECKPOINT_PATH, "s3Uri": uri}

    def _create_once(self, region: str, client_token: str, build_request: Callable[[], dict[str, Any]]) -> str:
        """CreateJob at most once per client token: the request (built, and its files uploaded,
        once) and then the job's ARN are recorded in the default bucket under the token."""
        marker = f"s3://{self.default_bucket(region)}/jobs/.client-tokens/{client_token}.json"
        try:
            record = json.loads(self.fs.cat_file(marker))
        except FileNotFoundError:
            record = {"request": build_request()}
            self.fs.pipe_file(marker, json.dumps(record).encode())
        if record.get("jobArn"):
            return record["jobArn"]
        record["jobArn"] = self.braket(region).create_job(**record["request"])["jobArn"]
        self.fs.pipe_file(marker, json.dumps(record).encode())
        return record["jobArn"]

    def resubmit_job(self, job_arn: str, client_token: str) -> str:
        region = resource_region(job_arn)
        return self._create_once(region, client_token, lambda: self._replacement_request(job_arn, client_token))

    def _replacement_request(self, job_arn: str, client_token: str) -> dict[str, Any]:
        """The failed job's CreateJob request, as GetJob echoes it, under a new name and S3 prefix,
        with the failed job's checkpoints copied in and renamed for the new job."""
        meta = self.get_job(job_arn)
        old, name = meta["jobName"], replacement_name(meta["jobName"])
        # Stamped with the lost job's end, not the clock: two racing resubmitters build the same request.
        stamp = int((meta.get("endedAt") or meta["createdAt"]).timestamp() * 1000)
        root = f"s3://{self.default_bucket(resource_region(job_arn))}/jobs/{name}/{stamp}"
        checkpoints = {"localPath": meta.get("checkpointConfig", {}).get("localPath") or DEFAULT_CHECKPOINT_PATH,
                       "s3Uri": f"{root}/checkpoints"}
        source = meta.get("checkpointConfig", {}).get("s3Uri")
        if source:
            self.aws.copy_prefix(source, checkpoints["s3Uri"], rename=lambda file: checkpoint_name_for(file, old, name))
        request = {key: meta[key] for key in REPLAYED_FIELDS if meta.get(key)}
        request.update(
            jobName=name, checkpointConfig=checkpoints, clientToken=client_token,
            outputDataConfig={**meta["outputDataConfig"], "s3Path": f"{root}/data"},
            # Tags under "aws:" are AWS's own and cannot be set in a request.
            tags={**{k: v for k, v in (meta.get("tags") or {}).items() if not k.startswith("aws:")},
                  REPLACES_TAG: job_arn},
        )
        return request

    # -- JobBackend: reading and cancelling --------------------------------------------------------

    def get_job(self, job_arn: str) -> dict[str, Any]:
        return self.braket(resource_region(job_arn)).get_job(jobArn=job_arn, additionalAttributeNames=["QueueInfo"])

    def cancel_job(self, job_arn: str) -> str:
        try:
            return self.braket(resource_region(job_arn)).cancel_job(jobArn=job_arn)["cancellationStatus"]
        except ClientError as error:
            if error.response["Error"]["Code"] in ("ConflictException", "ValidationException"):
                status = self.get_job(job_arn)["status"]
                if status in TERMINAL_STATES or status == "CANCELLING":
                    return status
            raise

    def read_log(self, job_arn: str, cursor: Any = None) -> LogChunk:
        """New lines of the job's CloudWatch streams (`/aws/braket/jobs`, `{name}/{uuid}/…`), at most
        about `LOG_CHUNK_BYTES` a call (`logs.read_job_log`)."""
        return read_job_log(self.aws, job_arn, cursor, lambda: self._log_prefix(job_arn))

    def _log_prefix(self, job_arn: str) -> str:
        return f"{self.get_job(job_arn)['jobName']}/{job_arn.rsplit('/', 1)[-1]}"

    def fetch_output_archive(self, job_arn: str, destination_file: Path) -> Path:
        s3_path = self.get_job(job_arn)["outputDataConfig"]["s3Path"].rstrip("/")
        try:
            self.fs.get_file(f"{s3_path}/output/model.tar.gz", str(destination_file))
        except FileNotFoundError:
            raise FileNotFoundError(f"Job {job_arn} has no {s3_path}/output/model.tar.gz.") from None
        return Path(destination_file)

    # -- quantum tasks (`quantum_tasks.QuantumTasks`) ------------------------------------------------

    def create_quantum_task(self, request: dict[str, Any], client_token: str | None = None) -> str:
        return self.quantum_tasks.create(request, client_token)

    def get_quantum_task(self, task_arn: str) -> dict[str, Any]:
        return self.quantum_tasks.get(task_arn)

    def cancel_quantum_task(self, task_arn: str) -> str:
        """Asks the task to stop; returns CANCELLING or CANCELLED, or the status of a task that already ended."""
        return self.quantum_tasks.cancel(task_arn)

    def wait_for_quantum_tasks(self, task_arns: Sequence[str], *args: Any, **options: Any) -> list[dict[str, Any]]:
        """Polls tasks until all have ended; their GetQuantumTask answers in order (`QuantumTasks.wait`)."""
        return self.quantum_tasks.wait(task_arns, *args, **options)

    def fetch_task_results(self, tasks: Sequence[dict[str, Any]], *args: Any,
                           **options: Any) -> list[dict[str, Any] | None]:
        """The `results.json` of ended tasks, read concurrently (`QuantumTasks.fetch_results`)."""
        return self.quantum_tasks.fetch_results(tasks, *args, **options)

    def run_quantum_tasks(self, requests: Sequence[dict[str, Any]], *args: Any, **options: Any) -> list[Finished]:
        """Creates tasks, waits, and returns (task, result) pairs, each task paid for once (`QuantumTasks.run`)."""
        return self.quantum_tasks.run(requests, *args, **options)


def _create_job_request(
    spec: JobSpec, image: str, role: str, source: str, channels: list[dict[str, Any]],
    checkpoints: dict[str, str], output: dict[str, str], client_token: str,
) -> dict[str, Any]:
    """Braket's CreateJob request for `spec`, its files uploaded to the locations given."""
    request: dict[str, Any] = {
        "jobName": spec.job_name,
        "roleArn": role,
        "algorithmSpecification": {
            "scriptModeConfig": {"entryPoint": spec.entry_point, "s3Uri": source, "compressionType": "GZIP"},
            "containerImage": {"uri": image},
        },
        "instanceConfig": {
            "instanceType": spec.instance_config.instanceType,
            "volumeSizeInGb": spec.instance_config.volumeSizeInGb,
            "instanceCount": spec.instance_config.instanceCount,
        },
        "outputDataConfig": output,
        "checkpointConfig": checkpoints,
        "deviceConfig": {"device": spec.device},
        "hyperParameters": dict(spec.hyperparameters),
        "stoppingCondition": {"maxRuntimeInSeconds": spec.stopping_condition.maxRuntimeInSeconds},
        "tags": dict(spec.tags),
        "inputDataConfig": channels,  # [] without input data, as Braket's SDK sends it
        "clientToken": client_token,
    }
    if spec.reservation_arn:
        request["associations"] = [{"arn": spec.reservation_arn, "type": "RESERVATION_TIME_WINDOW_ARN"}]
    return request
