"""`prefect-braket-endpoint` (or `python -m prefect_braket.endpoint`): the endpoint on a port, until interrupted."""

from __future__ import annotations

import argparse
import json
import logging
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
    parser.add_argument("--home", help="The directory of the embedded engine that runs the endpoint's jobs "
                                       "(default: a new temporary directory).")
    parser.add_argument("--fd", type=int, help="Serve this listening socket (inherited, already bound) "
                                               "instead of binding --port.")
    parser.add_argument("--for-job", type=Path, help="A JSON file of what to ready for one job before answering "
                                                     "(the embedded engine's, for a job's own endpoint); requests "
                                                     "are then not logged, since the output is the job's log.")
    options = parser.parse_args()
    if options.devices:
        devices = [DeviceModel(**d) for d in json.loads(options.devices.read_text())]
    else:
        devices = DEFAULT_DEVICES
    for_job = json.loads(options.for_job.read_text()) if options.for_job else None
    if for_job is not None:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server, url = serve(options.host, options.port, devices, fd=options.fd, engine_home=options.home,
                        for_job=for_job)
    print(f"Braket endpoint on {url}: export AWS_ENDPOINT_URL={url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.shutdown()
