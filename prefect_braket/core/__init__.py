"""What every layer shares, standard library only: the job's model and Braket's vocabulary.

ARNs and S3 URIs (`arns`), job and task states (`states`), errors and what is worth retrying
(`errors`), `JobSpec`, Braket's CreateJob checked early (`spec`), archives read as hostile input
(`archive`), metric lines read back (`metrics`), Braket's layout (`layout`), the package's home
(`home`), waiting with backoff (`polling`), requirements checks (`requirements`).
Nothing here imports Prefect, boto3, or any other layer of the package but the in-job runtime.
"""
