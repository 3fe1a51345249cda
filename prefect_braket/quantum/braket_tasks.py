"""Quantum tasks on Amazon Braket (or an endpoint that speaks its API), as a `TaskExecutor`.

It builds Braket's CreateQuantumTask requests (the OpenQASM action, shots, the job token inside a
job, the reservation) and reads their `results.json` into `TaskResult`s; the calls themselves go
through a `BraketSession`, the AWS backend's clients (`backends.aws`), which this module does not
import. Inside a job, results go where Braket puts the job's tasks (`AMZN_BRAKET_TASK_RESULTS_S3_URI`).
"""

from __future__ import annotations

import hashlib
import os
from typing import Any, Protocol, Sequence

from prefect_braket.core.arns import device_region, is_s3_uri, split_s3_uri
from prefect_braket.quantum.devices import (
    DeviceDescription,
    create_quantum_task_request,
)
from prefect_braket.quantum.programs import Program
from prefect_braket.quantum.results import TaskResult


class BraketSession(Protocol):
    """What the executor needs of an AWS backend."""

    def braket(self, region: str | None = None) -> Any:
        """A boto3 Braket client in `region`."""

    def default_bucket(self, region: str | None = None) -> str:
        """The account's Braket bucket in `region`, created if missing."""

    def run_quantum_tasks(self, requests: Sequence[dict[str, Any]], max_parallel: int = 10,
                          client_tokens: Sequence[str] | None = None) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """Creates tasks, waits for them, returns (GetQuantumTask answer, results.json) pairs in order."""


class BraketTaskExecutor:
    """A `TaskExecutor` for an AWS device ARN.

    Args:
        device_arn: The device.
        session: The AWS backend's clients, in the device's region.
        bucket, prefix: Where results go; by default the job's task location inside a job, else
            `amazon-braket-{region}-{account}` and "tasks".
        reservation_arn: A Braket Direct reservation the tasks run in.
    """

    def __init__(self, device_arn: str, session: BraketSession, bucket: str | None = None, prefix: str = "tasks",
                 reservation_arn: str | None = None):
        self.device_arn = device_arn
        self.session = session
        self.bucket = bucket
        self.prefix = prefix
        self.reservation_arn = reservation_arn

    def describe(self) -> DeviceDescription:
        region = device_region(self.device_arn)
        return DeviceDescription.from_get_device(self.session.braket(region).get_device(deviceArn=self.device_arn))

    def results_location(self) -> tuple[str, str]:
        in_job = os.environ.get("AMZN_BRAKET_TASK_RESULTS_S3_URI", "")
        if is_s3_uri(in_job) and not self.bucket:
            return split_s3_uri(in_job)
        return self.bucket or self.session.default_bucket(device_region(self.device_arn)), self.prefix

    def execute(self, programs: Sequence[Program], shots: int, job_token: str | None, max_parallel: int,
                client_token: str | None) -> list[TaskResult]:
        bucket, prefix = self.results_location()
        requests = [create_quantum_task_request(self.device_arn, program, shots, bucket, prefix, job_token,
                                                self.reservation_arn) for program in programs]
        # One token per task, derived from the batch's: a retried batch finds each task it created.
        tokens = None if client_token is None else [
            hashlib.sha256(f"{client_token}:{index}".encode()).hexdigest() for index in range(len(requests))]
        finished = self.session.run_quantum_tasks(requests, max_parallel=max_parallel, client_tokens=tokens)
        return [TaskResult.from_gate_model(document, task["quantumTaskArn"], self.device_arn, program=program)
                for program, (task, document) in zip(programs, finished, strict=True)]
