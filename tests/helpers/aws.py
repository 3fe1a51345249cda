"""Shared pieces of the AWS-path tests: ARNs, answers Braket gives, the devices of tests/data."""

import json
import secrets
import time
from datetime import datetime, timezone

from helpers.paths import DATA

FORTE = "arn:aws:braket:us-east-1::device/qpu/ionq/Forte-1"
ROLE = "arn:aws:iam::123456789012:role/service-role/AmazonBraketJobsExecutionRole"
BUCKET = "amazon-braket-us-east-1-123456789012"  # moto's account
JOB_ARN = "arn:aws:braket:us-east-1:123456789012:job/6a4ed3ad-6b4f-4a30-a7b6-0d0fc7a6d1e2"
# What a HybridJob sends GetJob for JOB_ARN: it always asks for the job's place in the queue.
GET_JOB_PARAMS = {"jobArn": JOB_ARN, "additionalAttributeNames": ["QueueInfo"]}


DEVICES = json.loads((DATA / "get_device.json").read_text())


def expect_get_device(stubber, name="forte"):
    """The GetDevice that job creation sends before uploading anything."""
    stubber.add_response("get_device", DEVICES[name], {"deviceArn": DEVICES[name]["deviceArn"]})


def recent_ms():
    # CloudWatch Logs (and moto) drop events more than 14 days old.
    return int(time.time() * 1000) - 60_000


def s3(backend):
    return backend.client("s3")


def get_job_answer(status="COMPLETED", **extra):
    answer = {
        "status": status, "jobArn": JOB_ARN, "roleArn": ROLE, "jobName": "train-example",
        "algorithmSpecification": {"scriptModeConfig": {"entryPoint": "a.entry_point:train", "s3Uri": f"s3://{BUCKET}/x/source.tar.gz"}},
        "instanceConfig": {"instanceType": "ml.m5.large", "volumeSizeInGb": 30, "instanceCount": 1},
        "outputDataConfig": {"s3Path": f"s3://{BUCKET}/jobs/train-example/1/data"},
        "checkpointConfig": {"localPath": "/opt/jobs/checkpoints", "s3Uri": f"s3://{BUCKET}/jobs/train-example/1/checkpoints"},
        "createdAt": datetime(2026, 11, 25, tzinfo=timezone.utc), "events": [],
    }
    answer.update(extra)
    return answer


def own_account(session) -> str:
    """Makes every client made from the boto3 `session` from now on talk to a moto account of its
    own (moto's server reads the account from the `x-moto-account-id` header): the test then
    starts from an account with no roles, log groups or buckets, whatever other tests of the
    session (which share moto's server) have made. Returns the account's id."""
    account = str(10**11 + secrets.randbelow(9 * 10**11))

    def to_own_account(request, **_):
        request.headers["x-moto-account-id"] = account

    session.events.register("before-sign", to_own_account)
    return account
