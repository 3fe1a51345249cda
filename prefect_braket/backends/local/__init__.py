"""The embedded engine: hybrid jobs as detached local processes, with no AWS account and no Docker.

    engine.py      LocalEngine, the JobBackend: creating, reading, cancelling and resubmitting jobs
    staging.py     a new job's files and first record
    record.py      JobRecord, a job's job.json, typed and checked as it is read
    store.py       the home's layout: a job's directory and record under a lock; index, claims, tickets
    queue.py       one job at a time on each QPU: tickets' order, positions, waiting for the device
    supervisor.py  the per-job process that runs a job and ends it, whatever way it goes
    processes.py   a job's processes: the /proc scan, ending them all, the subreaper
    container.py   the job's own process: Braket's container boot around the entry point
"""
