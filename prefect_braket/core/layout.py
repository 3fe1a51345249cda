"""Where Braket puts a job's things: the names of its S3 layout and of its CloudWatch logs.

    s3://{bucket}/jobs/{job_name}/{ms}/script/source.tar.gz    the job's code
    s3://{bucket}/jobs/{job_name}/{ms}/data/{channel}/...      input data
    s3://{bucket}/jobs/{job_name}/{ms}/data/output/model.tar.gz
    s3://{bucket}/jobs/{job_name}/{ms}/checkpoints/
    CloudWatch Logs /aws/braket/jobs, streams {job_name}/{job id}/...

The embedded engine keeps the same layout on disk, under its home.
"""

LOG_GROUP = "/aws/braket/jobs"
