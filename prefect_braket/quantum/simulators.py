"""The local simulators of `amazon-braket-default-simulator`, as a device that runs tasks here.

They take Braket's OpenQASM and return Braket's `GateModelTaskResult` documents, so a program and
its result look the same locally as on Amazon Braket. They run one task after another in this
process: the simulator holds the GIL, and threads measured no faster than a loop.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any, Sequence

from prefect_braket.core.arns import LOCAL_SIMULATORS
from prefect_braket.quantum.devices import LOCAL_MAX_SHOTS, DeviceDescription
from prefect_braket.quantum.programs import Program
from prefect_braket.quantum.results import TaskResult


class LocalSimulator:
    """The local simulators of `amazon-braket-default-simulator`, loaded once per process."""

    _lock = threading.Lock()
    _simulators: dict[str, Any] = {}
    _warm: set[str] = set()

    @classmethod
    def simulator(cls, device_arn: str) -> Any:
        name = LOCAL_SIMULATORS[device_arn]
        with cls._lock:
            if name not in cls._simulators:
                # Importing the simulator takes seconds; only processes that simulate pay for it.
                from braket.default_simulator import (
                    DensityMatrixSimulator,
                    StateVectorSimulator,
                )

                cls._simulators[name] = (StateVectorSimulator if name == "braket_sv" else DensityMatrixSimulator)()
            return cls._simulators[name]

    @classmethod
    def warm_up(cls, device_arn: str) -> None:
        """Loads the simulator and runs one tiny program on it: the first run in a process pays
        seconds for imports and the OpenQASM parser's first use (3.5 s measured, against ms after),
        which a loop's first iteration should not be charged for."""
        if device_arn in cls._warm:
            return
        cls.run(device_arn, Program("OPENQASM 3.0;\nqubit[1] q;\nh q[0];\n#pragma braket result probability q[0]\n"),
                shots=0)
        cls._warm.add(device_arn)

    @classmethod
    def describe(cls, device_arn: str) -> DeviceDescription:
        properties = cls.simulator(device_arn).properties
        action = properties.action["braket.ir.openqasm.program"]
        return DeviceDescription(
            arn=device_arn,
            name=LOCAL_SIMULATORS[device_arn],
            provider="braket",
            device_type="SIMULATOR",
            status="ONLINE",
            qubit_count=int(properties.paradigm.qubitCount),
            shots_range=(int(properties.service.shotsRange[0]),
                         min(int(properties.service.shotsRange[1]), LOCAL_MAX_SHOTS)),
            result_types={r.name.lower(): (int(r.minShots or 0), int(r.maxShots or 0))
                          for r in action.supportedResultTypes},
        )

    @classmethod
    def run(cls, device_arn: str, program: Program, shots: int) -> tuple[str, dict[str, Any], float]:
        """Runs a program; returns a task ARN, the `GateModelTaskResult` document and the time it took (ms)."""
        from braket.ir.openqasm import Program as OpenQASMProgram

        started = time.perf_counter()
        request = OpenQASMProgram(source=program.source, inputs=program.inputs)
        result = cls.simulator(device_arn).run(request, shots=shots)
        elapsed_ms = (time.perf_counter() - started) * 1000
        # The bits are lists of ints already: pydantic's dict() would copy them value by value,
        # which took a third of a 1,000-shot task's time.
        document = result.dict(exclude={"measurements"})
        document["measurements"] = result.measurements
        return f"local:task/{uuid.uuid4()}", document, elapsed_ms


class LocalSimulatorExecutor:
    """A `TaskExecutor` for `local:braket/braket_sv` and `local:braket/braket_dm`."""

    def __init__(self, device_arn: str):
        self.device_arn = device_arn

    def describe(self) -> DeviceDescription:
        return LocalSimulator.describe(self.device_arn)

    def execute(self, programs: Sequence[Program], shots: int, job_token: str | None, max_parallel: int,
                client_token: str | None) -> list[TaskResult]:
        results = []
        for program in programs:
            arn, document, elapsed = LocalSimulator.run(self.device_arn, program, shots)
            results.append(TaskResult.from_gate_model(document, arn, self.device_arn, program=program,
                                                      execution_duration_ms=elapsed))
        return results
