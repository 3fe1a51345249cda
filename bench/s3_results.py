"""Downloading task results from S3 (moto's server on 127.0.0.1): concurrent against one after another.

    python bench/s3_results.py [tasks]

Puts `tasks` results.json documents (a 10-qubit, 100-shot GateModelTaskResult each) into a
local moto S3 server, then reads them back the way `AwsBackend.fetch_task_results` does (a
thread pool over boto3), one after another (as a per-task `result()` loop would), and with
s3fs's concurrent `cat` for comparison. Medians of 3 runs.
"""

import json
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import boto3  # noqa: E402

from prefect_braket.backends.aws.backend import AwsBackend  # noqa: E402


def start_moto() -> tuple[subprocess.Popen, str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1)
            return server, endpoint
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("moto server did not start")


def main(count: int = 500) -> None:
    server, endpoint = start_moto()
    try:
        session = boto3.Session(aws_access_key_id="bench", aws_secret_access_key="bench", region_name="us-east-1")
        backend = AwsBackend(session=session, region="us-east-1", endpoint_url=endpoint)
        s3 = backend.client("s3")
        s3.create_bucket(Bucket="bench-results")
        document = json.dumps({
            "braketSchemaHeader": {"name": "braket.task_result.gate_model_task_result", "version": "1"},
            "measurements": [[i % 2] * 10 for i in range(100)], "measuredQubits": list(range(10)),
            "taskMetadata": {"braketSchemaHeader": {"name": "braket.task_result.task_metadata", "version": "1"},
                             "id": "x", "shots": 100, "deviceId": "bench"},
        }).encode()
        tasks = []
        for index in range(count):
            s3.put_object(Bucket="bench-results", Key=f"tasks/{index}/results.json", Body=document)
            tasks.append({"quantumTaskArn": f"task-{index}", "status": "COMPLETED",
                          "outputS3Bucket": "bench-results", "outputS3Directory": f"tasks/{index}"})
        concurrent, sequential, s3fs_cat = [], [], []
        for _ in range(3):
            started = time.perf_counter()
            documents = backend.fetch_task_results(tasks)
            concurrent.append(time.perf_counter() - started)
            assert len(documents) == count
            started = time.perf_counter()
            for task in tasks:
                json.loads(s3.get_object(Bucket=task["outputS3Bucket"],
                                         Key=f"{task['outputS3Directory']}/results.json")["Body"].read())
            sequential.append(time.perf_counter() - started)
            started = time.perf_counter()
            backend.fs.cat([f"{t['outputS3Bucket']}/{t['outputS3Directory']}/results.json" for t in tasks])
            s3fs_cat.append(time.perf_counter() - started)
        print(json.dumps({
            "tasks": count,
            "concurrent_fetch_task_results_s": round(statistics.median(concurrent), 3),
            "sequential_s": round(statistics.median(sequential), 3),
            "s3fs_cat_s": round(statistics.median(s3fs_cat), 3),
            "ratio_sequential_to_concurrent": round(statistics.median(sequential) / statistics.median(concurrent), 2),
            "ratio_s3fs_cat_to_concurrent": round(statistics.median(s3fs_cat) / statistics.median(concurrent), 2),
        }))
    finally:
        server.terminate()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 500)
