"""SearchDevices, SearchQuantumTasks and SearchJobs: Braket's filters and paging over answers.

Filters name a field of the answer and an operator (EQUAL, CONTAINS, BETWEEN, LT, LTE, GT, GTE);
every filter must hold. Fields ending in `At` compare as times (ISO 8601 or epoch seconds), others
as strings. Results come oldest first, `maxResults` at a time; `nextToken` is the offset of the
next page.
"""

from __future__ import annotations

import operator
import re
from datetime import datetime, timezone
from typing import Any

from prefect_braket.endpoint.errors import ValidationError

TASK_SUMMARY = ("quantumTaskArn", "status", "deviceArn", "shots", "outputS3Bucket", "outputS3Directory", "createdAt",
                "endedAt", "tags")
TASK_FILTERS = TASK_SUMMARY + ("jobArn",)
JOB_SUMMARY = ("status", "jobArn", "jobName", "device", "createdAt", "startedAt", "endedAt", "tags")
DEVICE_SUMMARY = ("deviceArn", "deviceName", "providerName", "deviceType", "deviceStatus")
COMPARISONS = {"LT": operator.lt, "LTE": operator.le, "GT": operator.gt, "GTE": operator.ge}
EPOCH_SECONDS = re.compile(r"\d+(\.\d+)?")
DEFAULT_PAGE = 100


def search(items: list[dict[str, Any]], payload: dict[str, Any], filterable: tuple[str, ...],
           shown: tuple[str, ...], key: str) -> dict[str, Any]:
    """One page of the items every filter in `payload` holds for, showing the `shown` fields, under `key`."""
    for flt in payload.get("filters") or []:
        if flt["name"] not in filterable:
            raise ValidationError(f"Cannot filter on {flt['name']!r}; use one of {', '.join(filterable)}.")
        timestamp = flt["name"].endswith("At")
        items = [i for i in items if matches(i.get(flt["name"]), flt["operator"], flt["values"], timestamp)]
    items.sort(key=lambda i: i["createdAt"])
    start = int(payload.get("nextToken") or 0)
    size = int(payload.get("maxResults") or DEFAULT_PAGE)
    answer: dict[str, Any] = {key: [{k: v for k, v in i.items() if k in shown and v is not None}
                                    for i in items[start:start + size]]}
    if start + size < len(items):
        answer["nextToken"] = str(start + size)
    return answer


def search_devices(devices: list[dict[str, Any]], payload: dict[str, Any]) -> dict[str, Any]:
    """SearchDevices: its filters take the values a field may have, and it does not page."""
    for flt in payload.get("filters") or []:
        if flt["name"] not in DEVICE_SUMMARY:
            raise ValidationError(f"Cannot filter devices on {flt['name']!r}; use one of {', '.join(DEVICE_SUMMARY)}.")
        devices = [d for d in devices if d[flt["name"]] in flt["values"]]
    return {"devices": devices}


def matches(value: Any, operator_name: str, wanted: list[str], timestamp: bool) -> bool:
    """Whether a field's value passes one filter; a missing field passes none."""
    if value is None:
        return False
    if operator_name == "CONTAINS":
        return any(w in str(value) for w in wanted)
    if timestamp:
        value = as_time(value)
        wanted = [as_time(w) for w in wanted]
    else:
        value = str(value)
    if operator_name == "EQUAL":
        return value in wanted
    if operator_name == "BETWEEN":
        if len(wanted) != 2:
            raise ValidationError("BETWEEN takes two values.")
        return wanted[0] <= value <= wanted[1]
    compare = COMPARISONS.get(operator_name)
    if compare is None:
        raise ValidationError(f"Unknown filter operator {operator_name!r}.")
    return compare(value, wanted[0])


def as_time(value: Any) -> datetime:
    """A filter's or a field's time: epoch seconds (number or digits) or ISO 8601."""
    if isinstance(value, (int, float)) or (isinstance(value, str) and EPOCH_SECONDS.fullmatch(value)):
        return datetime.fromtimestamp(float(value), timezone.utc)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
