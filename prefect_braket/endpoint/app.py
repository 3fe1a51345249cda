"""The endpoint as a WSGI application (`Endpoint`), and `serve`, which runs it on a port.

One port answers everything: a request signed for the `braket` service (its SigV4 credential
scope says so) goes to `BraketApi`, `/_endpoint/...` to the control routes, and everything else
(S3, CloudWatch Logs, STS, IAM, ECR) to moto.

Braket's job images are in moto's ECR (`seed_job_images`, before a region's first ECR request is
answered), tagged with the Python the endpoint runs jobs in, so that Braket's SDK (`hybrid_job`'s
Python check, `AwsSession.get_full_image_tag`) and prefect-braket's AWS backend read the image's
Python from ECR as they do on AWS, unpatched.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import tempfile
import threading
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Iterable
from urllib.parse import urlsplit

from prefect_braket.backends.local.engine import LocalEngine
from prefect_braket.core.arns import is_qpu, split_s3_uri
from prefect_braket.core.layout import bucket_location
from prefect_braket.endpoint.api import BraketApi
from prefect_braket.endpoint.devices import DEFAULT_DEVICES, DeviceModel
from prefect_braket.endpoint.faults import Faults

SCOPE = re.compile(r"Credential=[^/]+/\d{8}/([a-z0-9-]+)/([a-z0-9-]+)/aws4_request")  # region, service
CONTROL_PREFIX = "/_endpoint/"
CREDENTIALS = {"aws_access_key_id": "endpoint", "aws_secret_access_key": "endpoint"}
# Braket's job images: their registry, repositories and regions (`braket.jobs.image_uris`).
IMAGE_REGISTRY = "292282985366"
IMAGE_REPOSITORIES = ("amazon-braket-base-jobs", "amazon-braket-pytorch-jobs", "amazon-braket-tensorflow-jobs",
                      "amazon-braket-cudaq-jobs")
IMAGE_REGIONS = ("us-east-1", "us-west-1", "us-west-2", "eu-west-2", "eu-north-1")


def seed_job_images(ecr: Any, python: str | None = None) -> None:
    """Puts Braket's job images in the ECR of `ecr`'s region, as Braket's SDK finds them there:
    each repository's `latest`, and a full tag naming the image's Python
    (`1.0-cpu-py311-ubuntu22.04`), on the same digest. The Python is the one the endpoint runs
    jobs in (this one) unless given. Seeding again with the same Python changes nothing."""
    python = python or f"{sys.version_info.major}.{sys.version_info.minor}"
    full_tag = f"1.0-cpu-py{python.replace('.', '')}-ubuntu22.04"
    for repository in IMAGE_REPOSITORIES:
        try:
            ecr.create_repository(repositoryName=repository, registryId=IMAGE_REGISTRY)
        except ecr.exceptions.RepositoryAlreadyExistsException:
            pass
        layer = "sha256:" + hashlib.sha256(f"{repository}:{full_tag}".encode()).hexdigest()
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 0, "digest": layer},
            "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 0, "digest": layer}],
        })
        # moto answers a digest with one entry, tagged with the tag put last, where ECR answers an
        # entry per tag: the full tag goes last, so that both answers show it.
        for tag in ("latest", full_tag):
            try:
                ecr.put_image(repositoryName=repository, registryId=IMAGE_REGISTRY, imageManifest=manifest,
                              imageTag=tag)
            except ecr.exceptions.ImageAlreadyExistsException:
                pass


def device_for(arn: str) -> DeviceModel:
    """A device the endpoint serves for a job whose device is not in its set: named by its ARN."""
    provider, name = arn.rsplit("/", 2)[-2:]
    return DeviceModel(arn, name, provider, "QPU" if is_qpu(arn) else "SIMULATOR")


class _Body:
    """A response body as botocore reads one (`AWSResponse.raw`)."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def stream(self, **_: Any) -> Iterable[bytes]:
        yield self.data


def _body(environ: dict[str, Any]) -> bytes:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    return environ["wsgi.input"].read(length) if length else b""


def _answer(start_response: Callable, status: int, answer: Any, error_type: str | None) -> list[bytes]:
    payload = json.dumps(answer).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))]
    if error_type:
        headers.append(("x-amzn-ErrorType", error_type))
    start_response(f"{status} {'OK' if status == 200 else 'Error'}", headers)
    return [payload]


class Endpoint:
    """The WSGI application: Braket requests to `BraketApi`, everything else to moto.

    Control routes: `/_endpoint/faults` (POST `Faults` fields to set, GET to read),
    `/_endpoint/devices` (POST a list of `DeviceModel` fields to replace the set, GET to read),
    `/_endpoint/stats` (calls, throttled, failed, tasks and jobs created and deduplicated, jobs
    killed, results dropped) and `/_endpoint/job-tokens` (POST `job_token`, `job_arn`,
    `device_arn`, `running`: the token of a job running elsewhere, on the embedded engine, gets
    its device's priority while running; GET lists them, tokens left out). A POST answers what a
    GET would, after the change.
    """

    def __init__(self, url: str, engine_home: str | None = None, devices: Iterable[DeviceModel] = DEFAULT_DEVICES):
        try:
            from moto.moto_server.werkzeug_app import (
                DomainDispatcherApplication,
                create_backend_app,
            )
        except ImportError as error:
            raise ImportError("The local Braket endpoint answers S3, CloudWatch Logs, STS and IAM with moto: "
                              "pip install 'prefect-braket[endpoint]'.") from error

        self.moto = DomainDispatcherApplication(create_backend_app)
        self.url = url
        # Jobs run as local processes that inherit this environment: their AWS calls come here too.
        os.environ.update(AWS_ENDPOINT_URL=url, AWS_ACCESS_KEY_ID="endpoint", AWS_SECRET_ACCESS_KEY="endpoint")
        os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
        self._clients: dict[str, Any] = {}
        self._clients_lock = threading.Lock()
        engine = LocalEngine(engine_home or tempfile.mkdtemp(prefix="braket-endpoint-"))
        self.braket = BraketApi(self._aws_client, engine, devices)
        self._seeded: set[str] = set()  # the regions whose ECR has Braket's images
        self._seeding = threading.Lock()

    def _seed_images(self, region: str) -> None:
        """Braket's job images in `region`'s ECR, tagged with the Python the engine runs jobs in
        (this one), put there before the region's first ECR request is answered: an endpoint
        whose clients never ask ECR (a job's own) pays nothing for them."""
        with self._seeding:
            if region not in self._seeded:
                seed_job_images(self._in_process("ecr", region))
                self._seeded.add(region)

    def _aws_client(self, service: str) -> Any:
        """The endpoint's own client of one of the services moto answers here, made once."""
        with self._clients_lock:
            if service not in self._clients:
                import boto3

                self._clients[service] = boto3.client(service, endpoint_url=self.url, region_name="us-east-1",
                                                      **CREDENTIALS)
            return self._clients[service]

    def _in_process(self, service: str, region: str) -> Any:
        """A client of one of moto's services answered in this process, not over HTTP: what the
        endpoint sets up before it serves (Braket's images, a job's bucket) goes through moto's
        API as any client's would, before the port answers anyone."""
        import boto3
        from botocore.awsrequest import AWSResponse
        from werkzeug.test import Client

        wsgi = Client(self.moto)
        client = boto3.client(service, endpoint_url=self.url, region_name=region, **CREDENTIALS)

        def send(request: Any, **_: Any) -> Any:
            url = urlsplit(request.url)
            body = request.body.read() if hasattr(request.body, "read") else request.body
            headers = {name: value.decode() if isinstance(value, bytes) else value
                       for name, value in request.headers.items()}
            answer = wsgi.open(url.path, base_url=f"{url.scheme}://{url.netloc}", query_string=url.query,
                               method=request.method, headers=headers, data=body or b"")
            return AWSResponse(request.url, answer.status_code, dict(answer.headers), _Body(answer.get_data()))

        client.meta.events.register("before-send", send)
        return client

    def prepare_for_job(self, setup: dict[str, Any]) -> None:
        """Readies the endpoint for one job that runs elsewhere, before it answers (the embedded
        engine's endpoint of a job's own, `backends.local.services.OwnEndpoint`): the job's device
        served, its bucket made with its files in it, its token's priority on its device."""
        job = setup["job"]
        if job["device_arn"] not in {device.arn for device in self.braket.devices}:
            self.braket.set_devices([*self.braket.devices, device_for(job["device_arn"])])
        s3 = self._in_process("s3", setup["region"])
        s3.create_bucket(Bucket=setup["bucket"], **bucket_location(setup["region"]))
        for uri, path in setup["uploads"].items():
            bucket, key = split_s3_uri(uri)
            s3.put_object(Bucket=bucket, Key=key, Body=Path(path).read_bytes())
        self.braket._jobs.register_external(job["job_token"], job["job_arn"], job["device_arn"])

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path.startswith(CONTROL_PREFIX):
            return self._control(environ, start_response)
        scope = SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
        if scope and scope.group(2) == "ecr" and scope.group(1) in IMAGE_REGIONS:
            self._seed_images(scope.group(1))
        if not scope or scope.group(2) != "braket":
            return self.moto(environ, start_response)
        status, answer, error_type = self.braket.handle(environ["REQUEST_METHOD"], path,
                                                        environ.get("QUERY_STRING", ""), _body(environ),
                                                        scope.group(1))
        return _answer(start_response, status, answer, error_type)

    def _control(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        path = environ["PATH_INFO"]
        readers = {"stats": lambda: asdict(self.braket.stats), "faults": lambda: asdict(self.braket.faults),
                   "devices": lambda: [asdict(d) for d in self.braket.devices],
                   "job-tokens": self.braket._jobs.external_jobs}
        route = path[len(CONTROL_PREFIX):]
        try:
            if environ["REQUEST_METHOD"] == "POST":
                self._apply(route, json.loads(_body(environ) or b"{}"))
            if route not in readers:
                return _answer(start_response, 404, {"message": f"No control route {path}."}, None)
            return _answer(start_response, 200, readers[route](), None)
        except (TypeError, ValueError) as error:
            return _answer(start_response, 400, {"message": str(error)}, "ValidationException")

    def _apply(self, route: str, body: Any) -> None:
        """A control POST's change (a POST to a route that only reads changes nothing)."""
        if route == "faults":
            self.braket.set_faults(Faults(**body))
        elif route == "devices":
            self.braket.set_devices([DeviceModel(**d) for d in body])
        elif route == "job-tokens":
            self.braket._jobs.register_external(**body)


def serve(host: str = "127.0.0.1", port: int = 0, devices: Iterable[DeviceModel] = DEFAULT_DEVICES,
          fd: int | None = None, engine_home: str | None = None,
          for_job: dict[str, Any] | None = None) -> tuple[Any, str]:
    """Starts the endpoint in a background thread; returns the server and its URL.

    `fd` is a listening socket to serve instead of binding `port` (the embedded engine binds one
    for a job before the endpoint starts); `engine_home` the home of the engine that runs the
    endpoint's jobs (a new temporary directory by default); `for_job` what to ready for one job
    before answering (`Endpoint.prepare_for_job`)."""
    from werkzeug.serving import make_server

    holder: dict[str, Any] = {}

    def application(environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        return holder["app"](environ, start_response)

    # The endpoint needs its URL (jobs and its own clients call it), known once the port is bound.
    server = make_server(host, port, application, threaded=True, fd=fd)
    url = f"http://{host}:{server.port}"
    holder["app"] = Endpoint(url, engine_home, devices)
    if for_job is not None:
        holder["app"].prepare_for_job(for_job)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, url
