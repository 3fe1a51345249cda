"""A batch of quantum tasks against the same tasks one after another, with added latency per call.

    python bench/endpoint_latency.py [tasks] [latency_ms]

Runs the local Braket endpoint (`python -m prefect_braket.endpoint`) with `latency_ms` added to
every Braket call, then sends `tasks` small programs through `BraketDevice.run_batch` (creates and
polls 10 at a time, reads results concurrently) and through `BraketDevice.run` in a loop.
"""

import json
import math
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prefect_aws import AwsCredentials  # noqa: E402

from prefect_braket import BraketDevice  # noqa: E402

SV1 = "arn:aws:braket:::device/quantum-simulator/amazon/sv1"
PROGRAM = "OPENQASM 3.0;\ninput float theta;\nqubit[1] q;\nrx(theta) q[0];\n#pragma braket result expectation z(q[0])\n"


def main(tasks: int = 100, latency_ms: float = 200.0) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "prefect_braket.endpoint", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(f"{url}/moto-api/", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        credentials = AwsCredentials(aws_access_key_id="bench", aws_secret_access_key="bench", region_name="us-east-1",
                                     aws_client_parameters={"endpoint_url": url})
        device = BraketDevice(device_arn=SV1, aws_credentials=credentials)
        device.run(PROGRAM, shots=0, inputs={"theta": 0.0})  # bucket, simulator and clients ready
        faults = json.dumps({"latency_ms": latency_ms}).encode()
        request = urllib.request.Request(f"{url}/_endpoint/faults", data=faults, method="POST")
        urllib.request.urlopen(request).read()
        thetas = [i / tasks for i in range(tasks)]
        started = time.perf_counter()
        batch = device.run_batch([PROGRAM] * tasks, shots=0, inputs=[{"theta": t} for t in thetas])
        batch_s = time.perf_counter() - started
        started = time.perf_counter()
        sequential = [device.run(PROGRAM, shots=0, inputs={"theta": t}) for t in thetas]
        sequential_s = time.perf_counter() - started
        assert [r.values[0] for r in batch] == [r.values[0] for r in sequential]
        assert abs(batch[-1].values[0] - math.cos(thetas[-1])) < 1e-9
        print(json.dumps({"tasks": tasks, "latency_ms_per_call": latency_ms, "batch_s": round(batch_s, 2),
                          "sequential_s": round(sequential_s, 2),
                          "ratio_sequential_to_batch": round(sequential_s / batch_s, 2)}))
    finally:
        server.terminate()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100, float(sys.argv[2]) if len(sys.argv) > 2 else 200.0)
