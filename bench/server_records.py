"""What a bench waits for between measurements: the Prefect server's records of a flow run.

The server records task runs from their events after the flow has returned; a bench that measured
the next case at once would charge that backlog to it. The wait itself should cost the flow run
nothing of its own: one client serves every wait of the process (a new one loads the TLS
certificates, ~60 ms here, even for an http:// API), and the server is asked every 20 ms, so
that the wait ends within 20 ms of the records, not 200.
"""

import functools
import time
import uuid

from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.settings import get_current_settings

POLL_SECONDS = 0.02


@functools.cache
def _client(api_url: str) -> SyncPrefectClient:
    """The process's client for `api_url` (the cache key: a bench that moves to another server gets another)."""
    client = get_client(sync_client=True)
    client.__enter__()  # open for the process's life: the bench's waits share it
    return client


def wait_for_task_runs(flow_run_id: uuid.UUID, task_runs: int, timeout: float = 60.0) -> float:
    """Waits until the server holds `task_runs` finished task runs of the flow run; returns the seconds waited."""
    client = _client(str(get_current_settings().api.url))
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
        if sum(1 for run in runs if run.state and run.state.is_final()) >= task_runs:
            break
        time.sleep(POLL_SECONDS)
    return time.monotonic() - started
