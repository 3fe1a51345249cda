"""Every use of Prefect's private interfaces, in one place to check when Prefect changes.

- Artifact calls with `_sync=True`: from a worker thread of an async wait, or a publisher thread,
  Prefect's artifact functions would otherwise return coroutines nobody awaits.
- `SyncClientContext`, entered by hand around a shared client: a new client costs tens of
  milliseconds (it loads the TLS certificates, even for an http:// API), which an async flow
  would pay for every sync task run.
- Hooks appended to the running flow object (`on_crashed_hooks`, `on_cancellation_hooks`).
"""

from __future__ import annotations

import contextlib
import os
import threading
from typing import Any, Callable, Iterator

from prefect.artifacts import (
    TableArtifact,
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import ArtifactUpdate
from prefect.context import FlowRunContext, SyncClientContext
from prefect.settings import get_current_settings


def publish_markdown(markdown: str, key: str, description: str) -> Any:
    return create_markdown_artifact(markdown, key=key, description=description, _sync=True)


def publish_table(table: Any, key: str, description: str) -> Any:
    """Creates a table artifact; returns its id, for `update_table`."""
    return create_table_artifact(table, key=key, description=description, _sync=True)


def update_table(artifact_id: Any, table: Any, description: str) -> None:
    """Replaces a table artifact's rows and description in place. A new version of a keyed artifact
    would be a card of its own in its run's Artifacts tab; Prefect updates only progress artifacts
    in place by a function of its own, so this formats the table as `create_table_artifact` does
    and sends it with the client's `update_artifact`."""
    data = TableArtifact(table=table, description=description).format(_sync=True)  # type: ignore[call-arg]
    get_client(sync_client=True).update_artifact(artifact_id=artifact_id,
                                                 artifact=ArtifactUpdate(data=data, description=description))


def publish_progress(percent: float, key: str, description: str) -> Any:
    """Creates a progress artifact; returns its id, for `update_progress`."""
    return create_progress_artifact(percent, key=key, description=description, _sync=True)


def update_progress(artifact_id: Any, percent: float, description: str | None = None) -> None:
    """Updates a progress artifact in place (no new version), and its description if given."""
    update_progress_artifact(artifact_id, percent, description=description, _sync=True)


def on_flow_run_end(hook: Callable[[Any, Any, Any], None]) -> bool:
    """Adds `hook(flow, flow_run, state)` (once) to the running flow, for a crash or a
    cancellation; False outside a flow run."""
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return False
    for hooks in (context.flow.on_crashed_hooks, context.flow.on_cancellation_hooks):
        if hook not in hooks:
            hooks.append(hook)
    return True


_SHARED_CLIENTS: dict[tuple, Any] = {}
_SHARED_CLIENTS_LOCK = threading.Lock()


@contextlib.contextmanager
def shared_sync_client() -> Iterator[None]:
    """One sync API client for every task run and artifact call inside, kept for the process's later
    runs (per process and API settings, never closed). A sync flow's own client is used as it is."""
    if SyncClientContext.get() is not None:
        yield
        return
    key = (os.getpid(), tuple(get_current_settings().api.model_dump().items()))
    with _SHARED_CLIENTS_LOCK:
        if (client := _SHARED_CLIENTS.get(key)) is None:
            client = _SHARED_CLIENTS[key] = get_client(sync_client=True).__enter__()  # held open for later runs
        context = SyncClientContext.model_construct(client=client)
        context.__enter__()  # under the lock: entering and leaving count on the shared client
    try:
        yield
    finally:
        with _SHARED_CLIENTS_LOCK:
            context.__exit__(None, None, None)
