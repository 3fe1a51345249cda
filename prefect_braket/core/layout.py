"""Where Braket puts a job's things: the names of its S3 layout and of its CloudWatch logs.

    s3://{bucket}/jobs/{job_name}/{ms}/script/source.tar.gz    the job's code
    s3://{bucket}/jobs/{job_name}/{ms}/data/{channel}/...      input data
    s3://{bucket}/jobs/{job_name}/{ms}/data/output/model.tar.gz
    s3://{bucket}/jobs/{job_name}/{ms}/checkpoints/
    s3://{bucket}/jobs/{job_name}/tasks/{task id}/results.json the job's quantum tasks (no {ms})
    CloudWatch Logs /aws/braket/jobs, streams {job_name}/{job id}/...

The embedded engine keeps the same layout on disk, under its home.
"""

from __future__ import annotations

from typing import Any

from prefect_braket.core.arns import split_s3_uri

LOG_GROUP = "/aws/braket/jobs"


def default_bucket(region: str, account: str) -> str:
    """Braket's default bucket of an account in a region, as its SDK names it."""
    return f"amazon-braket-{region}-{account}"


def bucket_location(region: str) -> dict[str, Any]:
    """CreateBucket's arguments for a bucket in `region`: us-east-1 refuses a location constraint
    naming itself, and every other region needs one."""
    return {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}


def job_root(bucket: str, job_name: str, stamp: str) -> str:
    """`s3://{bucket}/jobs/{job_name}/{stamp}`: the prefix of one job's code, data and checkpoints."""
    return f"s3://{bucket}/jobs/{job_name}/{stamp}"


def container_s3_variables(job_name: str, script_uri: str, output_path: str) -> dict[str, str]:
    """The `s3://` variables Braket's container gives a job, from its CreateJob's source archive
    (`scriptModeConfig.s3Uri`) and output location (`outputDataConfig.s3Path`): the output bucket,
    where its quantum tasks' results go (`AwsDevice.run`'s default), its code, and where its
    `model.tar.gz` goes."""
    bucket, _ = split_s3_uri(output_path)
    return {
        "AMZN_BRAKET_OUT_S3_BUCKET": bucket,
        "AMZN_BRAKET_TASK_RESULTS_S3_URI": f"s3://{bucket}/jobs/{job_name}/tasks",
        "AMZN_BRAKET_SCRIPT_S3_URI": script_uri,
        "AMZN_BRAKET_JOB_RESULTS_S3_PATH": f"{output_path.rstrip('/')}/output",
    }
