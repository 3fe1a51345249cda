"""Where hybrid jobs run, behind one interface (`base.JobBackend`), chosen by name (`registry`).

`local`: the embedded engine, jobs as local processes under Braket's container contract.
`aws`: Amazon Braket through boto3, s3fs and CloudWatch Logs.
No backend imports Prefect, nor the registry that chooses among them.
"""
