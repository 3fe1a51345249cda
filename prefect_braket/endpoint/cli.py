"""`prefect-braket-endpoint` (or `python -m prefect_braket.endpoint`): the endpoint on a port, until interrupted."""

from __future__ import annotations

import argparse
import json
import threading
from pathlib import Path

from prefect_braket.endpoint.app import serve
from prefect_braket.endpoint.devices import DEFAULT_DEVICES, DeviceModel


def main() -> None:
    parser = argparse.ArgumentParser(description="A local Amazon Braket endpoint (with moto for S3 and Logs).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4566)
    parser.add_argument("--devices", type=Path, help="A JSON list of DeviceModel fields (default: SV1, DM1, "
                                                       "IonQ Forte-1 and IQM Garnet emulated on local simulators).")
    options = parser.parse_args()
    if options.devices:
        devices = [DeviceModel(**d) for d in json.loads(options.devices.read_text())]
    else:
        devices = DEFAULT_DEVICES
    server, url = serve(options.host, options.port, devices)
    print(f"Braket endpoint on {url}: export AWS_ENDPOINT_URL={url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.shutdown()
