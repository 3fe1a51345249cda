"""The endpoint as a WSGI application (`Endpoint`), and `serve`, which runs it on a port.

One port answers everything: a request signed for the `braket` service (its SigV4 credential
scope says so) goes to `BraketApi`, `/_endpoint/...` to the control routes, and everything else
(S3, CloudWatch Logs, STS, IAM) to moto.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import threading
from dataclasses import asdict
from typing import Any, Callable, Iterable

from prefect_braket.backends.local.engine import LocalEngine
from prefect_braket.endpoint.api import BraketApi
from prefect_braket.endpoint.devices import DEFAULT_DEVICES, DeviceModel
from prefect_braket.endpoint.faults import Faults

SCOPE = re.compile(r"Credential=[^/]+/\d{8}/([a-z0-9-]+)/([a-z0-9-]+)/aws4_request")  # region, service
CONTROL_PREFIX = "/_endpoint/"
CREDENTIALS = {"aws_access_key_id": "endpoint", "aws_secret_access_key": "endpoint"}


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
    `/_endpoint/devices` (POST a list of `DeviceModel` fields to replace the set, GET to read) and
    `/_endpoint/stats` (calls, throttled, failed, tasks and jobs created and deduplicated, jobs
    killed, results dropped). A POST answers what a GET would, after the change.
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

    def _aws_client(self, service: str) -> Any:
        """The endpoint's own client of one of the services moto answers here, made once."""
        with self._clients_lock:
            if service not in self._clients:
                import boto3

                self._clients[service] = boto3.client(service, endpoint_url=self.url, region_name="us-east-1",
                                                      **CREDENTIALS)
            return self._clients[service]

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path.startswith(CONTROL_PREFIX):
            return self._control(environ, start_response)
        scope = SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
        if not scope or scope.group(2) != "braket":
            return self.moto(environ, start_response)
        status, answer, error_type = self.braket.handle(environ["REQUEST_METHOD"], path,
                                                        environ.get("QUERY_STRING", ""), _body(environ),
                                                        scope.group(1))
        return _answer(start_response, status, answer, error_type)

    def _control(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        path = environ["PATH_INFO"]
        readers = {"stats": lambda: asdict(self.braket.stats), "faults": lambda: asdict(self.braket.faults),
                   "devices": lambda: [asdict(d) for d in self.braket.devices]}
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


def serve(host: str = "127.0.0.1", port: int = 0, devices: Iterable[DeviceModel] = DEFAULT_DEVICES) -> tuple[Any, str]:
    """Starts the endpoint in a background thread; returns the server and its URL."""
    from werkzeug.serving import make_server

    holder: dict[str, Any] = {}

    def application(environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        return holder["app"](environ, start_response)

    # The endpoint needs its URL (jobs and its own clients call it), known once the port is bound.
    server = make_server(host, port, application, threaded=True)
    url = f"http://{host}:{server.server_port}"
    holder["app"] = Endpoint(url, devices=devices)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, url
