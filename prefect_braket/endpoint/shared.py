"""What the endpoint's parts share: one lock, the device set, the faults and the counts.

The task queues, the job bridge and the API each hold the same `SharedState`. One re-entrant lock
guards all of it and every record (a handler holding it may look a record up again); `wake`, on
that lock, is notified whenever something a task worker waits for changes: a task queued, the
device set or the faults replaced. Nothing slow (a simulation, an S3 or engine call) runs under it.
"""

from __future__ import annotations

import random
import threading

from prefect_braket.endpoint.devices import DeviceModel
from prefect_braket.endpoint.errors import (
    BraketError,
    DeviceOffline,
    DeviceRetired,
    NotFound,
)
from prefect_braket.endpoint.faults import Faults, Stats


class SharedState:
    """The device set, the faults (with their random draws) and the counts, under one lock."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.wake = threading.Condition(self.lock)
        self.devices: dict[str, DeviceModel] = {}  # by ARN; replaced whole (`BraketApi.set_devices`)
        self.faults = Faults()
        self.random = random.Random()
        self.stats = Stats()

    def set_faults(self, faults: Faults) -> None:
        """Replaces the faults; their seed restarts the draws."""
        with self.wake:
            self.faults = faults
            self.random = random.Random(faults.seed)
            self.wake.notify_all()

    def status_of(self, device: DeviceModel) -> str:
        return self.faults.device_status(device)

    def device_in(self, arn: str, region: str, missing: type[BraketError] = NotFound) -> DeviceModel:
        """The device a request in `region` names; a QPU is served only in its own region."""
        device = self.devices.get(arn)
        if device is None:
            raise missing(f"Device {arn} not found: this endpoint serves {', '.join(sorted(self.devices))}.")
        if device.region and device.region != region:
            raise missing(f"Device {arn} is in {device.region}; this request went to {region}. "
                          "Send it to the device's region.")
        return device

    def check_available(self, device: DeviceModel) -> None:
        """Refuses new work for a device that is RETIRED or OFFLINE, as Braket does."""
        status = self.status_of(device)
        if status == "RETIRED":
            raise DeviceRetired(f"Device {device.arn} is retired.")
        if status == "OFFLINE":
            raise DeviceOffline(f"Device {device.arn} is OFFLINE.")
