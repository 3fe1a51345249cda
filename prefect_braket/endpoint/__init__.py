"""A local Amazon Braket endpoint: Braket's REST-JSON API on 127.0.0.1, with S3, CloudWatch Logs,
STS and IAM answered by moto on the same port.

Requests are told apart by the service in their SigV4 credential scope, so one
`AWS_ENDPOINT_URL` (or prefect-aws's `endpoint_url`) points boto3, s3fs and this package at it.

    prefect-braket-endpoint --port 4566                      # or python -m prefect_braket.endpoint
    prefect-braket-endpoint --port 4566 --devices devices.json

It answers GetDevice, SearchDevices, CreateQuantumTask, GetQuantumTask, CancelQuantumTask,
SearchQuantumTasks, CreateJob, GetJob, CancelJob and SearchJobs, with Braket's error codes.

- Devices are a configurable set (`DeviceModel`: ARN, region from the ARN, QPU or simulator,
  status, execution windows, qubits, shots range, time per task); their tasks run on the local
  simulators. A QPU ARN is served only in its region.
- Each device has a queue of quantum tasks: tasks carrying the token of a job running on that
  device go first (`queuePriority: Priority`), a QPU runs one task at a time and only inside its
  execution windows, and queue positions and sizes are reported as Braket reports them (strings;
  position 1 runs next). `results.json` goes to the emulated S3.
- Jobs run on the embedded engine (one running job per QPU) from the code and input data in the
  emulated S3. Their log goes to CloudWatch Logs (`/aws/braket/jobs`, `{name}/{uuid}/…`) and their
  checkpoints to S3 as they grow; `model.tar.gz` goes to S3 when they end.
- Faults on demand (`POST /_endpoint/faults`, see `Faults`): throttling, 5xx errors, latency,
  devices OFFLINE, job instances dying mid-run, result objects missing. `GET /_endpoint/stats`
  counts what happened; `POST /_endpoint/devices` replaces the device set.

The modules, from the outside in:

    cli          the command line (`main`)
    app          the WSGI application (`Endpoint`): Braket, control routes or moto; `serve`
    api          Braket's routes and handlers (`BraketApi`), and the faults each call meets
    task_queues  each device's Priority and Normal queues, and the workers that run tasks
    job_bridge   CreateJob onto the embedded engine; GetJob, CancelJob, SearchJobs; killed instances
    job_files    a job's files: staged in from S3, shipped out to CloudWatch Logs and S3
    records      the typed records of tasks and jobs, their registries and Braket's answers about them
    search       Search*'s filters and paging
    shared       the lock, device set, faults and counts the parts share
    faults       `Faults` (trouble on demand) and `Stats` (what happened)
    devices      `DeviceModel` and the default device set
    errors       Braket's errors, with their HTTP statuses and codes

Like Braket's service, which it emulates, the endpoint builds on the package's core vocabulary,
its quantum layer and the embedded engine, never on its Prefect layer or its AWS backend.
"""

from prefect_braket.endpoint.api import BraketApi
from prefect_braket.endpoint.app import Endpoint, serve
from prefect_braket.endpoint.cli import main
from prefect_braket.endpoint.devices import DEFAULT_DEVICES, DeviceModel
from prefect_braket.endpoint.faults import Faults

__all__ = ["DEFAULT_DEVICES", "BraketApi", "DeviceModel", "Endpoint", "Faults", "main", "serve"]
