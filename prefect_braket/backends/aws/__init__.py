"""Amazon Braket: jobs and quantum tasks through boto3, s3fs and CloudWatch Logs."""
