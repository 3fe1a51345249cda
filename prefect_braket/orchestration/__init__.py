"""The Prefect layer: blocks, tasks, the `hybrid_job` decorator, the job handle, and what a
waiting flow shows (log forwarding and artifacts).

It reaches the places jobs run only through `backends.registry` and the `JobBackend` interface,
never boto3 or the engine's files.
"""
