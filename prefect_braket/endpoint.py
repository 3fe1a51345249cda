"""A local Amazon Braket endpoint: Braket's REST-JSON API on 127.0.0.1, with S3, CloudWatch Logs,
STS and IAM answered by moto on the same port.

Requests are told apart by the service in their SigV4 credential scope, so one
`AWS_ENDPOINT_URL` (or prefect-aws's `endpoint_url`) points boto3, s3fs and this package at it.
Devices are backed by the local simulators; quantum tasks run on them and write Braket's
`results.json` to the emulated S3, where the AWS backend reads it as it would on AWS.

    python -m prefect_braket.endpoint --port 4566     # serves until interrupted

It answers GetDevice, SearchDevices, CreateQuantumTask, GetQuantumTask, CancelQuantumTask,
CreateJob, GetJob and CancelJob. Jobs run on the embedded engine from the code and input data
in the emulated S3; their log goes to CloudWatch Logs (`/aws/braket/jobs`, `{name}/{uuid}/…`) as it
grows, and their `model.tar.gz` and checkpoints go back to S3 when they end.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable
from urllib.parse import unquote

from prefect_braket.aws_backend import LOG_GROUP, split_s3_uri
from prefect_braket.backend import TERMINAL_STATES
from prefect_braket.devices import LocalSimulator
from prefect_braket.job_spec import JobSpec, StoppingCondition
from prefect_braket.local_engine import ARN_PREFIX, LocalEngine
from prefect_braket.programs import Program

ACCOUNT = "123456789012"
SIMULATED_DEVICES = {
    "arn:aws:braket:::device/quantum-simulator/amazon/sv1": ("SV1", "local:braket/braket_sv"),
    "arn:aws:braket:::device/quantum-simulator/amazon/dm1": ("DM1", "local:braket/braket_dm"),
}
SCOPE = re.compile(r"Credential=[^/]+/\d{8}/([a-z0-9-]+)/([a-z0-9-]+)/aws4_request")


class DeviceOffline(Exception):
    pass


class NotFound(Exception):
    pass


class BraketApi:
    """The Braket part of the endpoint: devices backed by local simulators, tasks run on them,
    jobs run on the embedded engine."""

    def __init__(self, client: Callable[[str], Any], engine: LocalEngine):
        self._client = client
        self._engine = engine
        self._tasks: dict[str, dict[str, Any]] = {}
        self._jobs: dict[str, dict[str, Any]] = {}
        self._tokens: dict[str, str] = {}
        self._lock = threading.Lock()
        self.offline: set[str] = set()

    # -- dispatch ----------------------------------------------------------------------------------

    def handle(self, method: str, path: str, body: bytes, region: str) -> tuple[int, dict[str, Any]]:
        routes = [
            ("GET", r"/device/(.+)", self.get_device),
            ("POST", r"/devices", self.search_devices),
            ("POST", r"/quantum-task", self.create_quantum_task),
            ("GET", r"/quantum-task/(.+)", self.get_quantum_task),
            ("PUT", r"/quantum-task/(.+)/cancel", self.cancel_quantum_task),
            ("POST", r"/job", self.create_job),
            ("PUT", r"/job/(.+)/cancel", self.cancel_job),
            ("GET", r"/job/(.+)", self.get_job),
        ]
        for verb, pattern, handler in routes:
            match = re.fullmatch(pattern, path)
            if verb == method and match:
                arguments = [unquote(g) for g in match.groups()]
                payload = json.loads(body) if body else {}
                try:
                    return 200, handler(*arguments, payload=payload, region=region)
                except NotFound as error:
                    return 404, {"message": f"{error.args[0]} not found."}
                except DeviceOffline as error:
                    return 424, {"message": str(error), "errorType": "DeviceOfflineException"}
                except (ValueError, KeyError) as error:
                    return 400, {"message": f"Invalid request: {error!r}"}
                except Exception as error:  # reported as Braket reports its own faults, not as an HTML page
                    return 500, {"message": f"{type(error).__name__}: {error}", "errorType": "InternalServiceException"}
        return 404, {"message": f"{method} {path} is not served by this endpoint."}

    # -- devices ---------------------------------------------------------------------------------------

    def _device(self, arn: str) -> dict[str, Any]:
        if arn not in SIMULATED_DEVICES:
            raise NotFound(arn)
        name, local = SIMULATED_DEVICES[arn]
        capabilities = LocalSimulator.simulator(local).properties.json()
        return {
            "deviceArn": arn, "deviceName": name, "providerName": "Amazon Braket", "deviceType": "SIMULATOR",
            "deviceStatus": "OFFLINE" if arn in self.offline else "ONLINE", "deviceCapabilities": capabilities,
            "deviceQueueInfo": [
                {"queue": "QUANTUM_TASKS_QUEUE", "queueSize": "0", "queuePriority": "Normal"},
                {"queue": "QUANTUM_TASKS_QUEUE", "queueSize": "0", "queuePriority": "Priority"},
                {"queue": "JOBS_QUEUE", "queueSize": "0"},
            ],
        }

    def get_device(self, arn: str, payload: dict[str, Any], region: str) -> dict[str, Any]:
        return self._device(arn)

    def search_devices(self, payload: dict[str, Any], region: str) -> dict[str, Any]:
        devices = []
        for arn in SIMULATED_DEVICES:
            device = self._device(arn)
            devices.append({k: device[k] for k in ("deviceArn", "deviceName", "providerName", "deviceType", "deviceStatus")})
        return {"devices": devices}

    # -- quantum tasks -----------------------------------------------------------------------------------

    def create_quantum_task(self, payload: dict[str, Any], region: str) -> dict[str, Any]:
        token = payload.get("clientToken")
        with self._lock:
            if token and token in self._tokens:
                return {"quantumTaskArn": self._tokens[token]}
        device = payload["deviceArn"]
        if device not in SIMULATED_DEVICES:
            raise ValueError(f"Device {device} is not served by this endpoint.")
        if device in self.offline:
            raise DeviceOffline(f"Device {device} is OFFLINE.")
        action = json.loads(payload["action"])
        program = Program(action["source"], action.get("inputs") or {})
        task_id = str(uuid.uuid4())
        arn = f"arn:aws:braket:{region}:{ACCOUNT}:quantum-task/{task_id}"
        directory = f"{payload['outputS3KeyPrefix'].rstrip('/')}/{task_id}"
        record = {
            "quantumTaskArn": arn, "status": "RUNNING", "deviceArn": device, "deviceParameters": "{}",
            "shots": payload["shots"], "outputS3Bucket": payload["outputS3Bucket"], "outputS3Directory": directory,
            "createdAt": datetime.now(timezone.utc).isoformat(), "tags": payload.get("tags") or {},
        }
        if payload.get("jobToken"):
            record["queueInfo"] = {"queue": "QUANTUM_TASKS_QUEUE", "position": "None", "queuePriority": "Priority"}
        with self._lock:
            self._tasks[arn] = record
            if token:
                self._tokens[token] = arn
        try:
            _, document, elapsed = LocalSimulator.run(SIMULATED_DEVICES[device][1], program, payload["shots"])
            document["taskMetadata"]["id"] = arn
            document["additionalMetadata"]["simulatorMetadata"] = {
                "braketSchemaHeader": {"name": "braket.task_result.simulator_metadata", "version": "1"},
                "executionDuration": int(elapsed),
            }
            body = json.dumps(document, default=lambda value: getattr(value, "value", None) or _plain(value))
            self._client("s3").put_object(Bucket=record["outputS3Bucket"], Key=f"{directory}/results.json", Body=body)
        except Exception as error:  # the task ended; it must not look RUNNING forever
            with self._lock:
                record.update(status="FAILED", failureReason=f"{type(error).__name__}: {error}"[:1024],
                              endedAt=datetime.now(timezone.utc).isoformat())
            return {"quantumTaskArn": arn}
        with self._lock:
            record.update(status="COMPLETED", endedAt=datetime.now(timezone.utc).isoformat())
        return {"quantumTaskArn": arn}

    def get_quantum_task(self, arn: str, payload: dict[str, Any], region: str) -> dict[str, Any]:
        with self._lock:
            if arn not in self._tasks:
                raise NotFound(arn)
            return dict(self._tasks[arn])

    def cancel_quantum_task(self, arn: str, payload: dict[str, Any], region: str) -> dict[str, Any]:
        with self._lock:
            if arn not in self._tasks:
                raise NotFound(arn)
            record = self._tasks[arn]
            if record["status"] not in ("COMPLETED", "FAILED", "CANCELLED"):
                record["status"] = "CANCELLED"
            return {"quantumTaskArn": arn, "cancellationStatus": "CANCELLED" if record["status"] == "CANCELLED"
                    else record["status"]}


    # -- jobs ---------------------------------------------------------------------------------------------

    def _download_prefix(self, uri: str, target: Path) -> None:
        bucket, prefix = split_s3_uri(uri)
        s3 = self._client("s3")
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                relative = item["Key"][len(prefix):].lstrip("/") or item["Key"].rsplit("/", 1)[-1]
                destination = target / relative
                destination.parent.mkdir(parents=True, exist_ok=True)
                s3.download_file(bucket, item["Key"], str(destination))

    def create_job(self, payload: dict[str, Any], region: str) -> dict[str, Any]:
        token = payload.get("clientToken")
        with self._lock:
            if token and token in self._tokens:
                return {"jobArn": self._tokens[token]}
        work = Path(tempfile.mkdtemp(prefix="braket-endpoint-job-"))
        script = payload["algorithmSpecification"]["scriptModeConfig"]
        bucket, key = split_s3_uri(script["s3Uri"])
        self._client("s3").download_file(bucket, key, str(work / "source.tar.gz"))
        channels = {}
        for channel in payload.get("inputDataConfig") or []:
            target = work / "input" / channel["channelName"]
            self._download_prefix(channel["dataSource"]["s3DataSource"]["s3Uri"], target)
            channels[channel["channelName"]] = str(target)
        checkpoints = payload.get("checkpointConfig", {}).get("s3Uri")
        if checkpoints:  # copy_checkpoints_from_job put them in S3 before CreateJob; the job reads them at start
            self._download_prefix(checkpoints, work / "checkpoints")
        spec = JobSpec(
            job_name=payload["jobName"], device=payload["deviceConfig"]["device"], source_module=work / "source.tar.gz",
            entry_point=script["entryPoint"], hyperparameters=payload.get("hyperParameters") or {},
            input_data=channels, tags=payload.get("tags") or {},
            stopping_condition=StoppingCondition(payload.get("stoppingCondition", {}).get("maxRuntimeInSeconds", 432000)),
        )
        local = self._engine.create_job(spec, client_token=token, initial_checkpoints=work / "checkpoints")
        arn = f"arn:aws:braket:{region}:{ACCOUNT}:job/{local[len(ARN_PREFIX):]}"
        stream = f"{payload['jobName']}/{local[len(ARN_PREFIX):]}/algo-1-{int(time.time())}"
        with self._lock:
            self._jobs.setdefault(arn, {"local": local, "request": payload, "stream": stream, "cursor": None,
                                        "synced": False, "lock": threading.Lock()})
            if token:
                self._tokens[token] = arn
        return {"jobArn": arn}

    def _ship_log(self, record: dict[str, Any]) -> None:
        chunk = self._engine.read_log(record["local"], record["cursor"])
        if not chunk.lines:
            return
        logs = self._client("logs")
        if record["cursor"] is None:
            for create in (lambda: logs.create_log_group(logGroupName=LOG_GROUP),
                           lambda: logs.create_log_stream(logGroupName=LOG_GROUP, logStreamName=record["stream"])):
                try:
                    create()
                except logs.exceptions.ResourceAlreadyExistsException:
                    pass
        now = int(time.time() * 1000)
        logs.put_log_events(logGroupName=LOG_GROUP, logStreamName=record["stream"],
                            logEvents=[{"timestamp": now, "message": line} for line in chunk.lines])
        record["cursor"] = chunk.cursor

    def _ship_output(self, record: dict[str, Any]) -> None:
        request, s3 = record["request"], self._client("s3")
        directory = self._engine.job_directory(record["local"])
        archive = directory / "data" / "output" / "model.tar.gz"
        if archive.exists():
            bucket, prefix = split_s3_uri(request["outputDataConfig"]["s3Path"])
            s3.upload_file(str(archive), bucket, f"{prefix}/output/model.tar.gz")
        checkpoints = request.get("checkpointConfig", {}).get("s3Uri")
        if checkpoints:
            bucket, prefix = split_s3_uri(checkpoints)
            root = directory / "checkpoints"
            for path in sorted(p for p in root.rglob("*") if p.is_file()):
                s3.upload_file(str(path), bucket, f"{prefix}/{path.relative_to(root).as_posix()}")

    def get_job(self, arn: str, payload: dict[str, Any], region: str) -> dict[str, Any]:
        with self._lock:
            if arn not in self._jobs:
                raise NotFound(arn)
            record = self._jobs[arn]
        with record["lock"]:  # one job's uploads at a time; other calls go on meanwhile
            meta = self._engine.get_job(record["local"])
            self._ship_log(record)
            if meta["status"] in TERMINAL_STATES and not record["synced"]:
                self._ship_output(record)
                record["synced"] = True
        request = record["request"]
        answer = {key: request[key] for key in (
            "jobName", "roleArn", "algorithmSpecification", "instanceConfig", "outputDataConfig", "checkpointConfig",
            "stoppingCondition", "hyperParameters", "deviceConfig", "tags", "inputDataConfig", "associations",
        ) if key in request}
        answer.update(jobArn=arn, status=meta["status"], queueInfo=meta["queueInfo"],
                      events=[{**e, "timeOfEvent": e["timeOfEvent"].timestamp()} for e in meta["events"]])
        for key in ("createdAt", "startedAt", "endedAt"):
            if key in meta:
                answer[key] = meta[key].timestamp()
        for key in ("failureReason", "billableDuration"):
            if key in meta:
                answer[key] = meta[key]
        return answer

    def cancel_job(self, arn: str, payload: dict[str, Any], region: str) -> dict[str, Any]:
        if arn not in self._jobs:
            raise NotFound(arn)
        status = self._engine.cancel_job(self._jobs[arn]["local"])
        return {"jobArn": arn, "cancellationStatus": "CANCELLING" if status not in TERMINAL_STATES else status}


def _plain(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, complex):
        return [value.real, value.imag]
    raise TypeError(f"Cannot serialise {type(value).__name__}")


@dataclass
class Faults:
    """Trouble on demand, for Braket calls: a share throttled or failing with a 5xx, added latency,
    devices reported OFFLINE. Set with `POST /_endpoint/faults` (JSON of these fields)."""

    throttle_rate: float = 0.0
    error_rate: float = 0.0
    latency_ms: float = 0.0
    offline_devices: list[str] = field(default_factory=list)
    seed: int | None = None


class Endpoint:
    """The WSGI application: Braket requests to `BraketApi`, everything else to moto.

    `/_endpoint/faults` (POST to set, GET to read) and `/_endpoint/stats` (calls, throttled,
    failed) configure and report fault injection.
    """

    def __init__(self, url: str, engine_home: str | None = None):
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

        self.moto = DomainDispatcherApplication(create_backend_app)
        self.url = url
        # Jobs run as local processes that inherit this environment: their AWS calls come here too.
        os.environ.update(AWS_ENDPOINT_URL=url, AWS_ACCESS_KEY_ID="endpoint", AWS_SECRET_ACCESS_KEY="endpoint")
        os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
        self.braket = BraketApi(self._aws_client, LocalEngine(engine_home or tempfile.mkdtemp(prefix="braket-endpoint-")))
        self._clients: dict[str, Any] = {}
        self.faults = Faults()
        self.random = random.Random()
        self.stats = {"calls": 0, "throttled": 0, "failed": 0}
        self._stats_lock = threading.Lock()

    def _aws_client(self, service: str) -> Any:
        if service not in self._clients:
            import boto3

            self._clients[service] = boto3.client(service, endpoint_url=self.url, region_name="us-east-1",
                                                  aws_access_key_id="endpoint", aws_secret_access_key="endpoint")
        return self._clients[service]

    def _control(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        if environ["PATH_INFO"] == "/_endpoint/faults" and environ["REQUEST_METHOD"] == "POST":
            length = int(environ.get("CONTENT_LENGTH") or 0)
            self.faults = Faults(**json.loads(environ["wsgi.input"].read(length) or b"{}"))
            self.random = random.Random(self.faults.seed)
            self.braket.offline = set(self.faults.offline_devices)
        answer = self.stats if environ["PATH_INFO"] == "/_endpoint/stats" else vars(self.faults)
        payload = json.dumps(answer).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))])
        return [payload]

    @staticmethod
    def _answer(start_response: Callable, status: int, answer: dict[str, Any], error_type: str | None) -> list[bytes]:
        payload = json.dumps(answer).encode()
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))]
        if error_type:
            headers.append(("x-amzn-ErrorType", error_type))
        start_response(f"{status} {'OK' if status == 200 else 'Error'}", headers)
        return [payload]

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        if environ.get("PATH_INFO", "").startswith("/_endpoint/"):
            return self._control(environ, start_response)
        scope = SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
        if not scope or scope.group(2) != "braket":
            return self.moto(environ, start_response)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        with self._stats_lock:
            self.stats["calls"] += 1
            draw = self.random.random()
        if self.faults.latency_ms:
            time.sleep(self.faults.latency_ms / 1000)
        if draw < self.faults.throttle_rate:
            with self._stats_lock:
                self.stats["throttled"] += 1
            return self._answer(start_response, 400, {"message": "Rate exceeded"}, "ThrottlingException")
        if draw < self.faults.throttle_rate + self.faults.error_rate:
            with self._stats_lock:
                self.stats["failed"] += 1
            return self._answer(start_response, 500, {"message": "Injected fault"}, "InternalServiceException")
        status, answer = self.braket.handle(environ["REQUEST_METHOD"], environ.get("PATH_INFO", ""), body, scope.group(1))
        error_type = None if status == 200 else (
            answer.pop("errorType", None) or ("ResourceNotFoundException" if status == 404 else "ValidationException"))
        return self._answer(start_response, status, answer, error_type)


def serve(host: str = "127.0.0.1", port: int = 0) -> tuple[Any, str]:
    """Starts the endpoint in a background thread; returns the server and its URL."""
    from werkzeug.serving import make_server

    holder: dict[str, Any] = {}

    def application(environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        return holder["app"](environ, start_response)

    server = make_server(host, port, application, threaded=True)
    url = f"http://{host}:{server.server_port}"
    holder["app"] = Endpoint(url)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, url


def main() -> None:
    parser = argparse.ArgumentParser(description="A local Amazon Braket endpoint (with moto for S3 and Logs).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4566)
    options = parser.parse_args()
    server, url = serve(options.host, options.port)
    print(f"Braket endpoint on {url}: export AWS_ENDPOINT_URL={url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.shutdown()


if __name__ == "__main__":
    main()
