"""What a flow run left on the Prefect server: artifacts."""

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId


def all_artifacts(flow_run_id) -> list:
    """Every version of every artifact of a flow run: what its Artifacts tab shows, a card each."""
    with get_client(sync_client=True) as client:
        return client.read_artifacts(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))


def latest_artifacts(flow_run_id) -> dict:
    """The newest version of each keyed artifact of a flow run."""
    return {a.key: a for a in sorted((a for a in all_artifacts(flow_run_id) if a.key), key=lambda a: a.created)}
