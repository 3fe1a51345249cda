"""Where the code runs, as Prefect sees it: the flow run and task run around a call.

A client token names a task call within its flow run (the same on every retry of it), so that a
retried submission finds the job it created; the retry condition lets only transient errors be
retried; artifact keys are made from free text.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from prefect.context import FlowRunContext, TaskRunContext

from prefect_braket.core.errors import is_transient


def in_flow_run() -> bool:
    """Whether this code runs in a Prefect flow run but not inside one of its task runs."""
    return FlowRunContext.get() is not None and TaskRunContext.get() is None

def current_flow_run_id() -> str | None:
    """The id of the flow run this code runs in (from a task run too, wherever it runs), or None."""
    task_context = TaskRunContext.get()
    if task_context is not None and task_context.task_run.flow_run_id is not None:
        return str(task_context.task_run.flow_run_id)
    flow_context = FlowRunContext.get()
    return str(flow_context.flow_run.id) if flow_context is not None and flow_context.flow_run is not None else None

def client_token() -> str | None:
    """A token naming this task call within its flow run: the same on every retry of it."""
    context = TaskRunContext.get()
    if context is None:
        return None
    run = context.task_run
    identity = f"{run.flow_run_id or run.id}:{run.task_key}:{run.dynamic_key}"
    return hashlib.sha256(identity.encode()).hexdigest()[:64]

def retry_if_transient(task: Any, task_run: Any, state: Any) -> bool:
    """A `retry_condition_fn` that retries only what can succeed on retry (`backend.is_transient`)."""
    try:
        state.result()
    except Exception as error:
        return is_transient(error)
    return False

def artifact_key(*parts: str) -> str:
    """An artifact key from free text: lowercase letters, digits and hyphens only."""
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower())).strip("-")
