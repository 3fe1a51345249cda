"""What a flow run left on the Prefect server: artifacts and log records."""

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, LogFilter, LogFilterFlowRunId

from helpers.waiting import wait_for


def all_artifacts(flow_run_id) -> list:
    """Every version of every artifact of a flow run: what its Artifacts tab shows, a card each."""
    with get_client(sync_client=True) as client:
        return client.read_artifacts(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))


def latest_artifacts(flow_run_id) -> dict:
    """The newest version of each keyed artifact of a flow run."""
    return {a.key: a for a in sorted((a for a in all_artifacts(flow_run_id) if a.key), key=lambda a: a.created)}


def flow_run_log_records(flow_run_id) -> list:
    """Every log record of a flow run (its task runs' included; each with its level and task run id),
    oldest first, once the run's own last record has reached the API (records are sent in order, a
    batch every 2 s)."""

    def read():
        logs = []
        with get_client(sync_client=True) as client:
            while True:
                page = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])),
                                        limit=200, offset=len(logs))
                logs += page
                if len(page) < 200:
                    break
        ended = any(log.task_run_id is None and log.message.startswith("Finished in state") for log in logs)
        return logs if ended else None

    return wait_for(read, timeout=30, interval=0.5)
