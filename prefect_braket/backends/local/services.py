"""Where an embedded job's Braket calls go: what `AwsDevice(...).run(...)` inside it talks to, and
the `s3://` locations it is given.

Braket's container gives a job the S3 locations of its CreateJob (`AMZN_BRAKET_OUT_S3_BUCKET`,
`AMZN_BRAKET_TASK_RESULTS_S3_URI`, where `AwsDevice.run` puts its tasks' results by default,
`AMZN_BRAKET_SCRIPT_S3_URI` and `AMZN_BRAKET_JOB_RESULTS_S3_PATH`), and its quantum tasks go to
the Braket of its account. A job on the embedded engine has no CreateJob of its own, so its
supervisor chooses (`choose`), from the job's record and the environment it inherited from
whoever submitted it, the first of these that applies:

    given         its caller set the locations (`LocalEngine.create_job(environment=...)`): the
                  local endpoint does, for the jobs of its CreateJob, which then run against it
    none          its device is a local simulator (`local:...`): its tasks need no Braket, and
                  it has no S3 locations
    endpoint      the environment names an endpoint (`AWS_ENDPOINT_URL`): locations in that
                  endpoint's default bucket, the source uploaded there, and the job's token
                  registered with it, so that its tasks to its device get priority
    aws           the environment has AWS credentials: locations in the account's default bucket
                  (`amazon-braket-{region}-{account}`, created if missing, the source uploaded),
                  and tasks on Amazon Braket, as in Braket's own local mode; no job token, which
                  Amazon Braket would not know: the job's tasks run in the normal queue
    own endpoint  neither: a local endpoint of the job's own (`python -m prefect_braket.endpoint`),
                  started when the job first connects to it (a job that makes no Braket call
                  pays nothing for it), as one of the job's processes, so ended with it; its
                  bucket made and the job's token registered with it before it answers

For endpoint and aws, the locations are prepared before the job starts; if that fails (no
network, no permission), the job starts without them and its log says why its Braket calls
will fail. The region is the device's, else the environment's, else us-east-1.
"""

from __future__ import annotations

import importlib.util
import json
import os
import select
import socket
import subprocess
import sys
import urllib.request
from typing import Any, Callable, Mapping

from prefect_braket.backends.local.processes import INSTANCE_VARIABLE
from prefect_braket.backends.local.record import JobRecord
from prefect_braket.backends.local.store import JobStore
from prefect_braket.core.arns import device_region, split_s3_uri
from prefect_braket.core.layout import bucket_location, container_s3_variables, default_bucket, job_root
from prefect_braket.jobs.data_persistence import write_atomically

GIVEN, NONE, ENDPOINT, AWS, OWN_ENDPOINT = "given", "none", "endpoint", "aws", "own endpoint"
TOKEN_VARIABLE = "AMZN_BRAKET_JOB_TOKEN"
# The account the local endpoint's STS (moto's) answers: its default bucket's name.
ENDPOINT_ACCOUNT = "123456789012"
ENDPOINT_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "endpoint", "AWS_SECRET_ACCESS_KEY": "endpoint"}
ENDPOINT_TOKENS_ROUTE = "/_endpoint/job-tokens"  # the local endpoint's: a job token's priority, by device
REGISTRATION_TIMEOUT_SECONDS = 5.0
SETUP_FILE = "endpoint.json"  # in the job's directory: what its own endpoint prepares before it answers


def choose(device: str, given: Mapping[str, str], environment: Mapping[str, str],
           has_credentials: Callable[[], bool]) -> str:
    """Where the Braket calls of a job on `device` go (the module's list): `given` is what the
    engine's caller set for the job, `environment` the one it inherits; `has_credentials` is only
    asked when nothing before it applies."""
    if "AMZN_BRAKET_TASK_RESULTS_S3_URI" in given:
        return GIVEN
    if device.startswith("local:"):
        return NONE
    if environment.get("AWS_ENDPOINT_URL"):
        return ENDPOINT
    if has_credentials():
        return AWS
    return OWN_ENDPOINT


def has_aws_credentials() -> bool:
    """Whether boto's default chain finds credentials here (a broken profile counts as none)."""
    import botocore.exceptions
    import botocore.session

    try:
        return botocore.session.get_session().get_credentials() is not None
    except botocore.exceptions.BotoCoreError:
        return False


class BraketService:
    """What one job's Braket calls go to: the variables its process gets (`environment`) and
    loses (`removed`), and what runs for it while it runs."""

    def __init__(self, kind: str, environment: dict[str, str] | None = None, removed: tuple[str, ...] = ()):
        self.kind = kind
        self.environment = environment or {}
        self.removed = removed

    def poll(self) -> None:
        """Called while the job runs, a few times a second."""

    def end(self) -> None:
        """Called once the job's processes have ended."""


def for_job(job: JobStore, record: JobRecord, note: Callable[[str], None]) -> BraketService:
    """The Braket service of the job (`choose`), ready for its process to start; `note` adds a
    line to the job's log."""
    kind = choose(record.device, record.engine.environment, os.environ, has_aws_credentials)
    if kind in (GIVEN, NONE):
        return BraketService(kind)
    if kind == OWN_ENDPOINT:
        if importlib.util.find_spec("moto") is None:
            note(f"This job's device {record.device} is on Braket, and its environment names neither an endpoint "
                 "(AWS_ENDPOINT_URL) nor AWS credentials: its Braket calls would go to a local endpoint of its own, "
                 f"which needs moto, not installed in {sys.executable}: pip install 'prefect-braket[endpoint]' there, "
                 "set AWS_ENDPOINT_URL, or give AWS credentials for Amazon Braket. Its Braket calls will fail.")
            return BraketService(kind)
        return OwnEndpoint(job, record)
    return _in_account(kind, job, record, note)


def _region(device: str, configured: str | None) -> str:
    return device_region(device) or configured or "us-east-1"


def _locations(job: JobStore, record: JobRecord, bucket: str) -> dict[str, str]:
    """The job's S3 locations in `bucket`, in Braket's layout, under the job's own millisecond."""
    root = job_root(bucket, record.job_name, job.dir.name)
    return container_s3_variables(record.job_name, f"{root}/script/source.tar.gz", f"{root}/data")


def _in_account(kind: str, job: JobStore, record: JobRecord, note: Callable[[str], None]) -> BraketService:
    """The job's locations in the default bucket of the account its credentials name, at the
    endpoint its environment names (`endpoint`) or on AWS (`aws`), its source uploaded there."""
    from botocore.exceptions import BotoCoreError, ClientError

    removed = (TOKEN_VARIABLE,) if kind == AWS else ()
    url = os.environ.get("AWS_ENDPOINT_URL", "")
    try:
        region, variables = _prepare_in_account(job, record)
    except (BotoCoreError, ClientError, OSError) as error:
        note(f"This job's device {record.device} is on Braket, at {url or 'AWS'}, but its S3 locations could not "
             f"be prepared there ({error}): its Braket calls (AwsDevice, BraketDevice) will fail. Check the "
             "credentials and the network, or unset AWS_ENDPOINT_URL and the credentials for a local endpoint of "
             "the job's own.")
        return BraketService(kind, removed=removed)
    environment = {**variables, "AWS_DEFAULT_REGION": region}
    if kind == AWS:
        return BraketService(kind, environment, removed)
    problem = _register(url, record, running=True)
    if problem:
        note(f"The endpoint {url} did not take this job's token ({problem}): its tasks to {record.device} run in "
             "the normal queue, without the job's priority.")
    return EndpointJob(url, record, environment)


def _prepare_in_account(job: JobStore, record: JobRecord) -> tuple[str, dict[str, str]]:
    """The job's region and locations, in `AMZN_BRAKET_OUT_S3_BUCKET` or the account's default
    bucket (created if missing, as Braket's SDK does), with its source uploaded there."""
    import boto3
    from botocore.config import Config

    session = boto3.Session()
    region = _region(record.device, session.region_name)
    # The job waits for this: an endpoint that does not answer is reported in seconds, not minutes.
    config = Config(connect_timeout=5, read_timeout=30, retries={"max_attempts": 3, "mode": "standard"})
    bucket = os.environ.get("AMZN_BRAKET_OUT_S3_BUCKET")
    s3 = session.client("s3", region_name=region, config=config)
    if not bucket:
        account = session.client("sts", region_name=region, config=config).get_caller_identity()["Account"]
        bucket = default_bucket(region, account)
        _create_bucket(s3, bucket, region)
    variables = _locations(job, record, bucket)
    s3.upload_file(str(job.source_archive), *split_s3_uri(variables["AMZN_BRAKET_SCRIPT_S3_URI"]))
    return region, variables


def _create_bucket(s3: Any, bucket: str, region: str) -> None:
    """Creates Braket's default bucket, as its SDK does; one of this account's already is fine."""
    from botocore.exceptions import ClientError

    try:
        s3.create_bucket(Bucket=bucket, **bucket_location(region))
    except ClientError as error:
        if error.response["Error"]["Code"] != "BucketAlreadyOwnedByYou":
            raise


def _register(url: str, record: JobRecord, running: bool) -> str | None:
    """Tells the local endpoint at `url` that `record`'s job token has priority on its device
    while `running`; what went wrong, if anything."""
    body = json.dumps({"job_token": record.engine.job_token, "job_arn": record.job_arn,
                       "device_arn": record.device, "running": running}).encode()
    request = urllib.request.Request(url.rstrip("/") + ENDPOINT_TOKENS_ROUTE, data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=REGISTRATION_TIMEOUT_SECONDS) as answer:
            answer.read()
    except OSError as error:  # URLError and HTTPError among them: not a prefect-braket endpoint, or down
        return str(error)
    return None


class EndpointJob(BraketService):
    """A job whose Braket calls go to the endpoint its environment names, its token registered
    there while it runs."""

    def __init__(self, url: str, record: JobRecord, environment: dict[str, str]):
        super().__init__(ENDPOINT, environment)
        self.url = url
        self.record = record

    def end(self) -> None:
        _register(self.url, self.record, running=False)


class OwnEndpoint(BraketService):
    """A local endpoint for one job, started on its first connection.

    The port is bound now, so that the job's environment names it before anything answers there;
    the job's first connection waits in the port's backlog while the endpoint starts on the same
    socket (`--fd`; seconds: it imports moto and the simulators). Before it answers, it makes the
    job's bucket, uploads its source and registers its token (`SETUP_FILE`). It carries the job's
    marker and descends from its supervisor, so it is one of the job's processes, ended with it."""

    def __init__(self, job: JobStore, record: JobRecord):
        region = _region(record.device, os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"))
        bucket = default_bucket(region, ENDPOINT_ACCOUNT)
        variables = _locations(job, record, bucket)
        self.job = job
        self.setup = job.dir / SETUP_FILE
        write_atomically(self.setup, json.dumps({
            "region": region, "bucket": bucket,
            "uploads": {variables["AMZN_BRAKET_SCRIPT_S3_URI"]: str(job.source_archive)},
            "job": {"job_arn": record.job_arn, "job_token": record.engine.job_token, "device_arn": record.device},
        }))
        self.listener: socket.socket | None = socket.create_server(("127.0.0.1", 0))
        self.process: subprocess.Popen | None = None
        url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        # The job's AWS calls go to its endpoint alone: credentials of the endpoint's, no profile.
        super().__init__(OWN_ENDPOINT, {**variables, **ENDPOINT_CREDENTIALS, "AWS_ENDPOINT_URL": url,
                                        "AWS_DEFAULT_REGION": region},
                         removed=("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE"))

    def poll(self) -> None:
        if self.listener is None or not select.select([self.listener], [], [], 0)[0]:
            return
        descriptor = self.listener.fileno()
        with open(self.job.log_file, "ab") as log:  # what the endpoint says goes to the job's log
            self.process = subprocess.Popen(
                [sys.executable, "-m", "prefect_braket.endpoint", "--fd", str(descriptor),
                 "--home", str(self.job.dir / "endpoint"), "--for-job", str(self.setup)],
                pass_fds=(descriptor,), env={**os.environ, INSTANCE_VARIABLE: str(self.job.instance)},
                cwd=self.job.dir, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )
        self.end()  # the endpoint has the socket now

    def end(self) -> None:
        if self.listener is not None:
            self.listener.close()
            self.listener = None
