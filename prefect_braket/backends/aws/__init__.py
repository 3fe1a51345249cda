"""Amazon Braket: jobs and quantum tasks through boto3, s3fs and CloudWatch Logs.

    backend.py        AwsBackend, the JobBackend: CreateJob (at most once per client token), resubmit, get, cancel
    session.py        clients per service and region, the S3 file system, default bucket, execution role
    images.py         Braket's job images, and the Python they run, read from their tags in ECR
    logs.py           a job's CloudWatch Logs streams, read in bounded chunks
    quantum_tasks.py  quantum tasks: created, polled and read concurrently, paid for once
"""
