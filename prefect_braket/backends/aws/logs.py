"""A job's log on Amazon Braket: its CloudWatch Logs streams, read in bounded chunks.

A job writes one stream per instance, `{job name}/{job id}/algo-…`, in `/aws/braket/jobs`. A read
goes on from a cursor: each stream's GetLogEvents token, the streams' prefix, and, after a read
stopped at its bound, the list of streams. Reading before the log group exists (a job not yet
started) returns no lines rather than failing.
"""

from __future__ import annotations

from typing import Any, Callable

from botocore.exceptions import ClientError

from prefect_braket.backends.aws.session import AwsSession
from prefect_braket.backends.base import LOG_CHUNK_BYTES, LogChunk
from prefect_braket.core.arns import resource_region
from prefect_braket.core.layout import LOG_GROUP

# The cursor's own entries, beside the streams' tokens (a stream's name never starts with "__").
PREFIX_KEY, STREAMS_KEY = "__prefix__", "__streams__"

Event = tuple[int, str]  # CloudWatch's timestamp (milliseconds) and message


def read_job_log(aws: AwsSession, job_arn: str, cursor: Any, log_prefix: Callable[[], str]) -> LogChunk:
    """New lines of the job's streams after `cursor`, at most about `LOG_CHUNK_BYTES`: GetLogEvents
    pages (each at most 1 MB) are read until that much has come, and the next call goes on from
    each stream's token. `log_prefix` gives the streams' prefix, asked for on a first read only."""
    state = dict(cursor or {})
    prefix = state.pop(PREFIX_KEY, None) or log_prefix()
    # A read that stopped at its bound keeps its list of streams, so that draining a backlog
    # does not call DescribeLogStreams (a low per-account quota) again for every chunk.
    streams = state.pop(STREAMS_KEY, None)
    region = resource_region(job_arn)
    logs = aws.client("logs", region)
    source = f"CloudWatch Logs group {LOG_GROUP}, streams {prefix}* in {region}"
    if streams is None:
        streams = _streams(logs, prefix)
        if streams is None:
            return LogChunk([], {**state, PREFIX_KEY: prefix}, source=source)
    events, more = _read_streams(logs, streams, state)
    events.sort(key=lambda event: event[0])
    state[PREFIX_KEY] = prefix
    if more:
        state[STREAMS_KEY] = streams
    return LogChunk([message.rstrip("\n") for _, message in events], state,
                    [timestamp / 1000 for timestamp, _ in events], more=more, source=source)


def _streams(logs: Any, prefix: str) -> list[str] | None:
    """The names of the streams under `prefix`, in order; None while the log group does not exist."""
    try:
        return sorted(
            stream["logStreamName"]
            for page in logs.get_paginator("describe_log_streams").paginate(
                logGroupName=LOG_GROUP, logStreamNamePrefix=prefix
            )
            for stream in page["logStreams"]
        )
    except ClientError as error:
        if error.response["Error"]["Code"] == "ResourceNotFoundException":
            return None
        raise


def _read_streams(logs: Any, streams: list[str], tokens: dict[str, Any]) -> tuple[list[Event], bool]:
    """The streams' new events, stream after stream, up to the bound; `tokens` (each stream's,
    updated here) say where each goes on from. True with them if the bound stopped the read."""
    events: list[Event] = []
    budget, more = LOG_CHUNK_BYTES, False
    for stream in streams:
        if budget <= 0:
            return events, True  # the streams left are read on the next call, each from its own token
        read, tokens[stream], more = _read_stream(logs, stream, tokens.get(stream), budget)
        events.extend(read)
        budget -= sum(len(message) for _, message in read)
    return events, more


def _read_stream(logs: Any, stream: str, token: str | None, budget: int) -> tuple[list[Event], str | None, bool]:
    """One stream's events from `token` on, page by page, until it has no more or `budget` bytes
    have come: the events, the token to go on from, and whether the budget stopped the read."""
    events: list[Event] = []
    while True:
        kwargs: dict[str, Any] = {"logGroupName": LOG_GROUP, "logStreamName": stream, "startFromHead": True}
        if token:
            kwargs["nextToken"] = token
        response = logs.get_log_events(**kwargs)
        events.extend((event["timestamp"], event["message"]) for event in response["events"])
        budget -= sum(len(event["message"]) for event in response["events"])
        new_token = response.get("nextForwardToken")
        if not response["events"] or new_token == token:  # the end of the stream, for now
            return events, new_token or token, False
        token = new_token
        if budget <= 0:
            return events, token, True
