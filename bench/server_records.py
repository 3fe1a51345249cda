"""What a bench waits for between measurements: the Prefect server's records of a flow run.

The server records task runs from their events after the flow has returned; a bench that measured
the next case at once would charge that backlog to it.
"""

import time
import uuid

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId


def wait_for_task_runs(flow_run_id: uuid.UUID, task_runs: int, timeout: float = 60.0) -> float:
    """Waits until the server holds `task_runs` finished task runs of the flow run; returns the seconds waited."""
    started = time.monotonic()
    with get_client(sync_client=True) as client:
        while time.monotonic() - started < timeout:
            runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
            if sum(1 for run in runs if run.state and run.state.is_final()) >= task_runs:
                break
            time.sleep(0.2)
    return time.monotonic() - started
