"""ARNs and S3 URIs as Braket writes them: what a device, job or task ARN says, parsed in one place.

A device ARN names a local simulator (`local:braket/braket_sv`) or an AWS device
(`arn:aws:braket:<region>::device/<qpu|quantum-simulator>/<provider>/<name>`, the region empty
for simulators that every region serves); job and task ARNs carry their region and account.

Example:
    ```python
    forte = DeviceArn.parse("arn:aws:braket:us-east-1::device/qpu/ionq/Forte-1")
    forte.region, forte.is_qpu, forte.provider, forte.name   # "us-east-1", True, "ionq", "Forte-1"
    resource_region("arn:aws:braket:eu-north-1:123456789012:job/6a4e...")   # "eu-north-1"
    ```
"""

from __future__ import annotations

import re
from dataclasses import dataclass

LOCAL_SIMULATORS = {"local:braket/braket_sv": "braket_sv", "local:braket/braket_dm": "braket_dm"}
AWS_DEVICE_ARN = re.compile(r"^arn:aws[a-z-]*:braket:([a-z0-9-]*):(\d*):device/(qpu|quantum-simulator)/([^/]+)/(.+)$")
RESOURCE_ARN = re.compile(r"^arn:aws[a-z-]*:braket:([a-z0-9-]+):(\d{12}):(job|quantum-task)/(.+)$")
S3_URI = re.compile(r"^s3://([^/]+)/?(.*)$")
QPU_REGIONS = ("us-east-1", "us-west-1", "us-west-2", "eu-west-2", "eu-north-1")


@dataclass(frozen=True)
class DeviceArn:
    """A device ARN, read: local or on AWS, QPU or simulator, its provider, name and region."""

    arn: str
    local: bool
    is_qpu: bool
    provider: str
    name: str
    region: str | None  # None for local simulators and for AWS simulators, which every region serves

    @classmethod
    def parse(cls, arn: object) -> "DeviceArn":
        """Reads a device ARN, or raises ValueError naming the accepted forms."""
        if isinstance(arn, str) and arn in LOCAL_SIMULATORS:
            return cls(arn, True, False, "braket", LOCAL_SIMULATORS[arn], None)
        match = AWS_DEVICE_ARN.match(arn) if isinstance(arn, str) else None
        if not isinstance(arn, str) or match is None:
            raise ValueError(
                f"Device ARN {arn!r} is not one Braket knows: use 'local:braket/braket_sv', "
                "'local:braket/braket_dm', or an AWS ARN such as "
                "'arn:aws:braket:::device/quantum-simulator/amazon/sv1' "
                "or 'arn:aws:braket:us-east-1::device/qpu/ionq/Forte-1'."
            )
        region, _, kind, provider, name = match.groups()
        return cls(arn, False, kind == "qpu", provider, name, region or None)

    @property
    def slug(self) -> str:
        """`provider-name`, for names made from a device (limits, queues)."""
        return re.sub(r"[^A-Za-z0-9-]+", "-", f"{self.provider}-{self.name}").strip("-")


def check_device_arn(arn: object) -> str:
    """Returns a well-formed device ARN, or raises ValueError naming the accepted forms."""
    return DeviceArn.parse(arn).arn


def device_region(arn: str) -> str | None:
    """The region an AWS device lives in; None for local simulators and region-less ARNs."""
    return DeviceArn.parse(arn).region


def is_qpu(arn: str) -> bool:
    """Whether a device is a QPU (one task, and one job, at a time) rather than a simulator."""
    return DeviceArn.parse(arn).is_qpu


def resource_region(arn: str) -> str:
    """The region of a job or quantum-task ARN (`arn:aws:braket:<region>:<account>:job/<id>`)."""
    match = RESOURCE_ARN.match(arn)
    if not match:
        raise ValueError(f"{arn!r} is not a Braket job or task ARN (arn:aws:braket:<region>:<account>:job/<id>).")
    return match.group(1)


def is_s3_uri(location: object) -> bool:
    return str(location).startswith("s3://")


def split_s3_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/key/` as ("bucket", "key")."""
    match = S3_URI.match(uri)
    if not match:
        raise ValueError(f"{uri!r} is not an S3 URI (s3://bucket/key).")
    return match.group(1), match.group(2).rstrip("/")
