"""The devices the endpoint serves (`DeviceModel`), and the set it serves unless told otherwise."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from prefect_braket.core.arns import check_device_arn, device_region
from prefect_braket.quantum.devices import DeviceDescription, ExecutionWindow
from prefect_braket.quantum.simulators import LocalSimulator

ALWAYS_OPEN = {"executionDay": "Everyday", "windowStartHour": "00:00", "windowEndHour": "23:59:59"}
WINDOW_DAYS = ("Everyday", "Weekdays", "Weekend", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday",
               "Saturday", "Sunday")
WINDOW_HOUR = re.compile(r"([01]\d|2[0-3]):[0-5]\d(:[0-5]\d)?")
OPENQASM_ACTION = "braket.ir.openqasm.program"  # the one action the endpoint runs
CHOICES = {"type": ("QPU", "SIMULATOR"), "status": ("ONLINE", "OFFLINE", "RETIRED"),
           "simulator": ("braket_sv", "braket_dm")}


@dataclass
class DeviceModel:
    """A device the endpoint serves. Its tasks run on a local simulator; a QPU's take
    `seconds_per_task` each, one at a time, inside its execution windows.

    Example (a `--devices` file is a JSON list of these):
        `{"arn": "arn:aws:braket:us-west-1::device/qpu/rigetti/Cepheus-1-108Q", "name": "Cepheus-1-108Q",
        "provider": "Rigetti", "type": "QPU", "qubits": 108,
        "execution_windows": [{"executionDay": "Weekdays", "windowStartHour": "15:00", "windowEndHour": "19:00"}]}`
    """

    arn: str
    name: str
    provider: str = "Amazon Braket"
    type: str = "SIMULATOR"
    status: str = "ONLINE"
    simulator: str = "braket_sv"
    qubits: int | None = None
    execution_windows: list[dict[str, str]] = field(default_factory=lambda: [dict(ALWAYS_OPEN)])
    shots_range: list[int] | None = None
    seconds_per_task: float = 0.0
    concurrency: int | None = None

    def __post_init__(self) -> None:
        check_device_arn(self.arn)
        if self.arn.startswith("local:"):
            raise ValueError(f"Device {self.arn!r}: the endpoint serves AWS device ARNs, not local ones.")
        for name, allowed in CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ValueError(
                    f"Device {self.arn}: {name} {getattr(self, name)!r} is not one of {', '.join(allowed)}.")
        for window in self.execution_windows:
            day, start, end = (window.get(k) for k in ("executionDay", "windowStartHour", "windowEndHour"))
            if day not in WINDOW_DAYS or not all(WINDOW_HOUR.fullmatch(hour or "") for hour in (start, end)):
                raise ValueError(f"Device {self.arn}: execution window {window} needs executionDay (one of "
                                 f"{', '.join(WINDOW_DAYS)}), windowStartHour and windowEndHour as HH:MM[:SS].")
        self.shots_range = list(self.shots_range or ([1, 100000] if self.type == "QPU" else [0, 100000]))
        self.concurrency = self.concurrency or (1 if self.type == "QPU" else 2)

    @property
    def region(self) -> str:
        """The device's region; "" for simulators, which every region serves."""
        return device_region(self.arn) or ""

    @property
    def local_arn(self) -> str:
        """The local simulator its tasks run on."""
        return f"local:braket/{self.simulator}"

    def summary(self, status: str) -> dict[str, Any]:
        """SearchDevices' entry for it, showing `status` (the faults may show it OFFLINE)."""
        return {"deviceArn": self.arn, "deviceName": self.name, "providerName": self.provider,
                "deviceType": self.type, "deviceStatus": status}

    def capabilities(self) -> dict[str, Any]:
        """GetDevice's `deviceCapabilities`: the simulator's, with this device's windows, shots and qubits."""
        capabilities = json.loads(LocalSimulator.simulator(self.local_arn).properties.json())
        # Only what the endpoint runs: a client told of JAQCD or program sets sends them (PennyLane's
        # plugin sends program sets), and they would be refused.
        capabilities["action"] = {OPENQASM_ACTION: capabilities["action"][OPENQASM_ACTION]}
        capabilities["service"].update(executionWindows=self.execution_windows, shotsRange=self.shots_range)
        if self.qubits:
            capabilities["paradigm"]["qubitCount"] = self.qubits
        return capabilities

    def window_open(self) -> bool:
        """Whether one of its execution windows is open now (the package's own reading of them)."""
        windows = tuple(ExecutionWindow(w["executionDay"], w["windowStartHour"], w["windowEndHour"])
                        for w in self.execution_windows)
        return DeviceDescription(self.arn, self.name, self.provider, self.type, self.status, self.qubits or 0,
                                 tuple(self.shots_range), windows).window_open()


DEFAULT_DEVICES = (
    DeviceModel("arn:aws:braket:::device/quantum-simulator/amazon/sv1", "SV1"),
    DeviceModel("arn:aws:braket:::device/quantum-simulator/amazon/dm1", "DM1", simulator="braket_dm"),
    DeviceModel("arn:aws:braket:us-east-1::device/qpu/ionq/Forte-1", "Forte-1", "IonQ", "QPU", qubits=36,
                seconds_per_task=0.05),
    DeviceModel("arn:aws:braket:eu-north-1::device/qpu/iqm/Garnet", "Garnet", "IQM", "QPU", qubits=20,
                seconds_per_task=0.05),
)
