"""Shared pieces of the AWS-path tests: ARNs, answers Braket gives, the devices of tests/data."""

import json
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
