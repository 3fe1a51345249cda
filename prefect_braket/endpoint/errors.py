"""Braket's errors, as the endpoint answers them: an HTTP status and an `x-amzn-ErrorType` code.

A handler raises one of these; the dispatch (`api.BraketApi.handle`) turns it into the answer
boto3 turns back into `braket.exceptions.<code>`.
"""

from __future__ import annotations


class BraketError(Exception):
    """An error answered as Braket answers it: an HTTP status and an `x-amzn-ErrorType`."""

    status = 400
    code = "ValidationException"


class ValidationError(BraketError):
    """A request Braket refuses as malformed or out of range (400)."""


class NotFound(BraketError):
    """A device, task or job this endpoint does not have (404)."""

    status, code = 404, "ResourceNotFoundException"


class Conflict(BraketError):
    """A request at odds with the resource's state, such as cancelling what has ended (409)."""

    status, code = 409, "ConflictException"


class DeviceOffline(BraketError):
    """A device that takes no new tasks or jobs for now (424)."""

    status, code = 424, "DeviceOfflineException"


class DeviceRetired(BraketError):
    """A device that takes no new tasks or jobs any more (410)."""

    status, code = 410, "DeviceRetiredException"
