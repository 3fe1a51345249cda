"""One boto3 session's view of AWS for Braket: clients, an S3 file system, the bucket and the role.

Clients are made once per service and region, with botocore's standard retry mode for throttling
and 5xx answers. Every client honours one endpoint override (prefect-aws's
`aws_client_parameters.endpoint_url`, or `AWS_ENDPOINT_URL`), which is how tests reach a local
moto server. The default bucket and the jobs' execution role are found, or made, once.
"""

from __future__ import annotations

import os
from typing import Any, Callable

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from prefect_braket.core.arns import split_s3_uri
from prefect_braket.core.layout import bucket_location, default_bucket

ROLE_PREFIX = "AmazonBraketJobsExecutionRole"
# Exponential backoff with jitter per call. botocore's "adaptive" mode also slows the whole client
# after throttling, down to 0.5 calls a second: 50 tasks under 30% throttling took 70-74 s with it
# and 6-14 s without (local endpoint, same run).
RETRIES = {"max_attempts": 10, "mode": "standard"}


class AwsConfigurationError(RuntimeError):
    """Something the job needs on AWS (a role, a region, a matching Python) is missing."""


class AwsSession:
    """Clients per service and region, an s3fs file system, the default bucket and execution role.

    Args:
        session: The boto3 session (credentials); the default chain when None.
        region: Where clients go unless told otherwise.
        endpoint_url: One endpoint for every service (a local emulator); `AWS_ENDPOINT_URL` by default.
        braket_client: A ready Braket client, used in its own region (tests attach botocore's Stubber to one).
    """

    def __init__(
        self, session: boto3.Session | None = None, region: str | None = None,
        endpoint_url: str | None = None, braket_client: Any = None,
    ):
        self.session = session or boto3.Session()
        self.region = region or self.session.region_name or "us-east-1"
        self.endpoint_url = endpoint_url or os.environ.get("AWS_ENDPOINT_URL")
        self._braket = braket_client
        self._clients: dict[tuple[str, str], Any] = {}
        self._buckets: dict[str, str] = {}
        self._role: str | None = None
        self._fs: Any = None
        self._fs_credentials: Any = None

    def client(self, service: str, region: str | None = None) -> Any:
        region = region or self.region
        if service == "braket" and self._braket is not None and region == self._braket.meta.region_name:
            return self._braket
        key = (service, region)
        if key not in self._clients:
            config = Config(retries=RETRIES, max_pool_connections=50)
            kwargs = {"endpoint_url": self.endpoint_url} if self.endpoint_url else {}
            self._clients[key] = self.session.client(service, region_name=region, config=config, **kwargs)
        return self._clients[key]

    def braket(self, region: str | None = None) -> Any:
        return self.client("braket", region)

    @property
    def fs(self) -> Any:
        """An s3fs file system with this session's credentials and endpoint.

        s3fs takes credentials as values, not as the session's refreshing provider; the file
        system is made again whenever the session's credentials have changed (an assumed role's
        refreshed), so a long wait does not end with expired ones.
        """
        credentials = self.session.get_credentials()
        frozen = credentials.get_frozen_credentials() if credentials else None
        if self._fs is None or self._fs_credentials != frozen:
            self._fs = self._file_system(frozen)
            self._fs_credentials = frozen
        return self._fs

    def _file_system(self, frozen: Any) -> Any:
        import s3fs  # only for jobs: tasks and logs go through boto3

        client_kwargs: dict[str, Any] = {"region_name": self.region}
        if self.endpoint_url:
            client_kwargs["endpoint_url"] = self.endpoint_url
        return s3fs.S3FileSystem(
            key=frozen.access_key if frozen else None,
            secret=frozen.secret_key if frozen else None,
            token=frozen.token if frozen else None,
            client_kwargs=client_kwargs,
            config_kwargs={"retries": RETRIES},
            max_concurrency=25,
            skip_instance_cache=True,
        )

    def default_bucket(self, region: str | None = None) -> str:
        """`AMZN_BRAKET_OUT_S3_BUCKET`, else `amazon-braket-{region}-{account}`, created if missing."""
        region = region or self.region
        if region not in self._buckets:
            bucket = os.environ.get("AMZN_BRAKET_OUT_S3_BUCKET")
            if not bucket:
                account = self.client("sts", region).get_caller_identity()["Account"]
                bucket = default_bucket(region, account)
                self._create_bucket(bucket, region)
            self._buckets[region] = bucket
        return self._buckets[region]

    def _create_bucket(self, bucket: str, region: str) -> None:
        """Creates Braket's default bucket, as its SDK does; one of this account's already is fine."""
        s3 = self.client("s3", region)
        try:
            s3.create_bucket(Bucket=bucket, **bucket_location(region))
        except ClientError as error:
            code = error.response["Error"]["Code"]
            if code == "BucketAlreadyExists":
                raise AwsConfigurationError(
                    f"Bucket {bucket} belongs to another account: set AMZN_BRAKET_OUT_S3_BUCKET to a bucket of yours."
                ) from error
            if code != "BucketAlreadyOwnedByYou":
                raise

    def role_arn(self, given: str | None) -> str:
        """The jobs' execution role: given, `BRAKET_JOBS_ROLE_ARN`, or looked up once in IAM."""
        if given or os.environ.get("BRAKET_JOBS_ROLE_ARN"):
            return given or os.environ["BRAKET_JOBS_ROLE_ARN"]
        if self._role is None:
            self._role = self._find_role()
        if not self._role:
            raise AwsConfigurationError(
                f"No execution role for Braket jobs: no IAM role under /service-role/ is named {ROLE_PREFIX}*. "
                "Pass role_arn=..., set BRAKET_JOBS_ROLE_ARN, or create the role in the Braket console."
            )
        return self._role

    def _find_role(self) -> str | None:
        """The first of the account's roles the Braket console creates for jobs, if any (IAM is global)."""
        iam = self.client("iam", "us-east-1")
        for page in iam.get_paginator("list_roles").paginate(PathPrefix="/service-role/"):
            for role in page["Roles"]:
                if role["RoleName"].startswith(ROLE_PREFIX):
                    return role["Arn"]
        return None

    def copy_prefix(self, source_uri: str, target_uri: str, rename: Callable[[str], str] = lambda name: name) -> None:
        """Copies every object under one S3 prefix to another, server-side, each file name through `rename`."""
        source_bucket, source_prefix = split_s3_uri(source_uri)
        target_bucket, target_prefix = split_s3_uri(target_uri)
        s3 = self.client("s3")
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=source_bucket, Prefix=source_prefix):
            for item in page.get("Contents", []):
                folder, _, file = item["Key"][len(source_prefix):].lstrip("/").rpartition("/")
                relative = f"{folder}/{rename(file)}" if folder else rename(file)
                s3.copy_object(
                    Bucket=target_bucket, Key=f"{target_prefix}/{relative}",
                    CopySource={"Bucket": source_bucket, "Key": item["Key"]},
                )
