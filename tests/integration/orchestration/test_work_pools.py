"""Work pools: one `process` pool and two workers, each as a machine of its own would run it (its own
PREFECT_BRAKET_HOME, PREFECT_HOME and results), sharing the session's Prefect server and a Braket
service (the local endpoint). The deployed flow (tests/data/qpu_flow.py) runs one hybrid job on a
QPU under the device's Prefect global concurrency limit."""

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from contextlib import ExitStack, contextmanager
from datetime import datetime, timezone
from pathlib import Path

import boto3
import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, LogFilter, LogFilterFlowRunId
from prefect.settings import PREFECT_API_URL

from helpers.paths import DATA
from helpers.servers import endpoint_control
from helpers.waiting import pid_alive, processes_with_environment, wait_for
from prefect_braket import HybridJob, JobNotFoundError, hybrid_job
from prefect_braket.backends.aws.backend import AwsBackend
from prefect_braket.orchestration.ownership import OWNER_TAG
from prefect_braket.orchestration.submission import device_limit_name

SV1 = "arn:aws:braket:::device/quantum-simulator/amazon/sv1"
FORTE = "arn:aws:braket:us-east-1::device/qpu/ionq/Forte-1"
MACHINES = ("machine-a", "machine-b")
# One run for each worker, at once: the fewest that show the limit held across workers. A run is
# a process that takes 15-40 s to start on a loaded 2-core machine, before its job does anything.
RUNS = 2
# What a machine of its own would not have: this session's AWS profile, bucket or role.
NOT_CARRIED = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AMZN_BRAKET_OUT_S3_BUCKET",
               "BRAKET_JOBS_ROLE_ARN")
# A process on one machine that finds, through the Braket service, a job another machine submitted
# (by its `submitted-from` tag), attaches to it, waits for it and reads it. argv: device, since.
ATTACH = """
import json, os, sys, time
import boto3
from prefect_braket import HybridJob

braket, here = boto3.client("braket"), os.environ["PREFECT_BRAKET_HOME"]
filters = [{"name": "device", "values": [sys.argv[1]], "operator": "EQUAL"},
           {"name": "createdAt", "values": [sys.argv[2]], "operator": "GTE"}]
deadline = time.monotonic() + 240
while not (found := [j for j in braket.search_jobs(filters=filters)["jobs"] if j["tags"]["submitted-from"] != here]):
    if time.monotonic() > deadline:
        sys.exit("no job from another machine")
    time.sleep(0.2)
job = HybridJob.attach(found[0]["jobArn"])
print(json.dumps({"attached": job.arn, "state": job.state()}), flush=True)
result = job.result(poll_interval_seconds=0.5)
print(json.dumps({"result": result, "state": job.state(), "metrics": job.metrics()}), flush=True)
"""


def _forte(window_open: bool) -> list[dict]:
    """The endpoint's devices, with Forte-1's execution window open, or opening two hours from now."""
    hour = datetime.now(timezone.utc).hour
    window = ({"executionDay": "Everyday", "windowStartHour": "00:00", "windowEndHour": "23:59:59"} if window_open
              else {"executionDay": "Everyday", "windowStartHour": f"{(hour + 2) % 24:02d}:00",
                    "windowEndHour": f"{(hour + 3) % 24:02d}:00"})
    return [{"arn": SV1, "name": "SV1"},
            {"arn": FORTE, "name": "Forte-1", "provider": "IonQ", "type": "QPU", "qubits": 36,
             "execution_windows": [window]}]


def _machine(root: Path) -> dict[str, str]:
    """The environment of a machine of its own that uses this Prefect server and Braket's API."""
    env = {name: value for name, value in os.environ.items() if name not in NOT_CARRIED}
    env.update(PREFECT_API_URL=PREFECT_API_URL.value(), PREFECT_HOME=str(root / "prefect-home"),
               PREFECT_BRAKET_HOME=str(root / "braket-home"), PREFECT_RESULTS_LOCAL_STORAGE_PATH=str(root / "results"),
               PREFECT_SERVER_ANALYTICS_ENABLED="false",
               # A worker asks for runs every 10 s by default: a run would wait for that.
               PREFECT_WORKER_QUERY_SECONDS="1",
               AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
    root.mkdir(parents=True, exist_ok=True)
    return env


def _end(pid: int, grace: float) -> None:
    """SIGTERM, then SIGKILL if `pid` is still there after `grace` seconds."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if pid_alive(pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@contextmanager
def _started(command: list[str], env: dict[str, str], output: Path):
    """A process of this machine, its output in `output`; on the way out it is ended, and so is
    every process left with this machine's home in its environment (the flow runs a worker started
    run in sessions of their own, and a worker stopped mid-run leaves them)."""
    with open(output, "wb") as sink:
        process = subprocess.Popen(command, env=env, cwd=output.parent, stdout=sink, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        _end(process.pid, grace=20)
        process.wait(timeout=10)
        for pid in processes_with_environment("PREFECT_BRAKET_HOME", env["PREFECT_BRAKET_HOME"]):
            _end(pid, grace=5)


@pytest.fixture(scope="module")
def machines(tmp_path_factory):
    """Two machines' environments, each with a worker on one new process pool: (the pool's name,
    {name: env}). Asked for before the endpoint, so that the workers start (20-70 s on a loaded
    machine) while it does."""
    root = tmp_path_factory.mktemp("machines")
    pool = f"two-machines-{uuid.uuid4().hex[:8]}"
    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
    environments = {name: _machine(root / name) for name in MACHINES}
    with ExitStack() as stack:
        for name, env in environments.items():
            # One flow run at a time each: the first run holds its worker until the test opens the
            # QPU's window, so the second run has to go to the other worker.
            stack.enter_context(_started(
                [sys.executable, "-m", "prefect", "worker", "start", "--pool", pool, "--type", "process",
                 "--name", name, "--limit", "1"], env, root / name / "worker.txt"))
        yield pool, environments


def _jobs(braket, since: datetime) -> list[dict]:
    """The endpoint's records of the jobs created on Forte-1 since `since` (GetJob's, times included)."""
    found = braket.search_jobs(filters=[{"name": "device", "values": [FORTE], "operator": "EQUAL"},
                                        {"name": "createdAt", "values": [since.isoformat()], "operator": "GTE"}])
    return [braket.get_job(jobArn=j["jobArn"]) for j in found["jobs"]]


def _flow_runs(client, runs) -> list:
    return client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[r.id for r in runs])))


def _messages(client, runs) -> list:
    return client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[r.id for r in runs])))


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _records(path: Path) -> list[dict]:
    """What an attacher printed (one JSON object a line), without whatever else it wrote (warnings)."""
    return [json.loads(line) for line in _lines(path) if line.startswith("{")]


def _waited(predicate, timeout: float, outputs: list[Path]):
    """`wait_for`, failing with the end of each output in `outputs` (workers, attachers)."""
    try:
        return wait_for(predicate, timeout=timeout, interval=0.5)
    except AssertionError as error:
        tails = "\n".join(f"--- {path}\n" + "\n".join(_lines(path)[-15:]) for path in outputs)
        raise AssertionError(f"{error}; the processes' output:\n{tails}") from None


# Worker and flow-run processes take 20-90 s each to start on a shared 2-core machine: the test
# took 100-180 s here (load 5-10), after 60-120 s of setup (the Prefect server and the endpoint).
@pytest.mark.timeout(600)
def test_two_workers_share_one_pool_one_qpu_and_their_jobs(machines, endpoint, endpoint_devices, tmp_path):
    """Two workers on one process pool run a deployment's flow runs; their jobs go to one Braket
    service, one at a time on the QPU whichever worker submits them (the device's global
    concurrency limit is the server's, not a worker's); each job is created and completed once;
    each machine attaches to, waits for and reads the job the other machine submitted."""
    pool, machines = machines
    homes = {name: env["PREFECT_BRAKET_HOME"] for name, env in machines.items()}
    braket = boto3.client("braket", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    reader = AwsBackend(session=boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                                              region_name="us-east-1"), region="us-east-1", endpoint_url=endpoint)
    # The QPU takes no task until the test opens its window: the first job holds the device's
    # limit for as long as the test needs to look at both workers.
    endpoint_control(endpoint, "devices", _forte(window_open=False))
    since = datetime.now(timezone.utc)
    before = endpoint_control(endpoint, "stats")
    attach_outputs = {name: tmp_path / f"attach-{name}.txt" for name in machines}
    outputs = [*(Path(env["PREFECT_HOME"]).parent / "worker.txt" for env in machines.values()),
               *attach_outputs.values()]

    with ExitStack() as stack, get_client(sync_client=True) as client:
        attaching = {name: stack.enter_context(_started([sys.executable, "-c", ATTACH, FORTE, since.isoformat()],
                                                        {**env, "AWS_ENDPOINT_URL": endpoint}, attach_outputs[name]))
                     for name, env in machines.items()}
        # The deployment names the Braket service its runs use; the rest is each machine's own.
        deployment = flow.from_source(source=str(DATA), entrypoint="qpu_flow.py:qpu_job").deploy(
            name=pool, work_pool_name=pool, job_variables={"env": {"AWS_ENDPOINT_URL": endpoint}},
            print_next_steps=False, ignore_warnings=True)
        runs = [client.create_flow_run_from_deployment(deployment, parameters={"index": i}) for i in range(RUNS)]

        # Both workers' runs reach the device's limit; only the one that got it has created a job.
        def all_waiting_for_the_slot():
            waiting = {log.flow_run_id for log in _messages(client, runs)
                       if log.message == f"Waiting for a slot of concurrency limit {device_limit_name(FORTE)}"}
            return len(waiting) == RUNS

        _waited(all_waiting_for_the_slot, 300, outputs)
        first, = _waited(lambda: [j for j in _jobs(braket, since) if j["status"] == "RUNNING"], 60, outputs)
        assert [j["jobArn"] for j in _jobs(braket, since)] == [first["jobArn"]]

        # The other machine has attached to it before it could end; then the window opens.
        other = next(name for name, home in homes.items() if home != first["tags"]["submitted-from"])
        (attached,) = _waited(lambda: _records(attach_outputs[other]), 60, outputs)
        assert attached["attached"] == first["jobArn"] and attached["state"] in ("QUEUED", "RUNNING")
        endpoint_control(endpoint, "devices", _forte(window_open=True))

        _waited(lambda: all(r.state.is_final() for r in _flow_runs(client, runs)), 240, outputs)
        finished = _flow_runs(client, runs)
        assert all(r.state.is_completed() for r in finished), [(r.name, r.state) for r in finished]
        for process in attaching.values():
            process.wait(timeout=60)
        logs = _messages(client, runs)

    # Every flow run created one job, and every job completed once.
    jobs = sorted(_jobs(braket, since), key=lambda j: j["startedAt"])
    after = endpoint_control(endpoint, "stats")
    assert after["jobs_created"] - before["jobs_created"] == RUNS
    assert sorted(j["tags"][OWNER_TAG] for j in jobs) == sorted(str(r.id) for r in runs)
    assert [j["status"] for j in jobs] == ["COMPLETED"] * RUNS
    results = {j["jobArn"]: HybridJob.attach(j["jobArn"], reader).result() for j in jobs}
    assert sorted(r["index"] for r in results.values()) == list(range(RUNS))
    assert all(r["priority"] == "Priority" and r["ones"] == 10 for r in results.values())

    # One job at a time on the QPU: none started before the one before it ended, and none was even
    # created before then (the endpoint would queue a job created early; the limit holds it back).
    for earlier, later in zip(jobs, jobs[1:], strict=False):
        assert later["createdAt"] >= earlier["endedAt"], (earlier["jobArn"], later["jobArn"])
        assert later["startedAt"] >= earlier["endedAt"]

    # Both workers ran flow runs: each run's job was submitted with its worker's home, and each
    # worker's name is in the runs' logs. (Which run a worker logged is not checked: two workers
    # can both start to submit one run, and the server lets one of them have it.)
    assert sorted(j["tags"]["submitted-from"] for j in jobs) == sorted(homes.values())
    assert all(j["tags"]["submitted-from"] == results[j["jobArn"]]["submitted_from"] for j in jobs)
    for name in machines:
        assert any(log.message.startswith(f"Worker '{name}' submitting flow run") for log in logs), name

    # Each machine read the job the other submitted, as the service has it.
    for name, output in attach_outputs.items():
        attached, read = _records(output)
        assert results[attached["attached"]]["submitted_from"] != homes[name]
        assert read == {"result": results[attached["attached"]], "state": "COMPLETED",
                        "metrics": {**read["metrics"], "ones": [10]}}


def test_an_embedded_job_attached_from_another_machine_says_where_it_lives(engine, tmp_path, monkeypatch):
    """An embedded-engine job exists in the home it was created under alone: attached from a
    machine with another PREFECT_BRAKET_HOME, the error names the home looked in and the ways out."""

    def quick():
        return {"done": True}

    job = hybrid_job(device="local:braket/braket_sv")(quick)()
    assert job.result(poll_interval_seconds=0.2) == {"done": True}

    monkeypatch.setenv("PREFECT_BRAKET_HOME", str(tmp_path / "another-machine"))
    with pytest.raises(JobNotFoundError) as raised:
        HybridJob.attach(job.arn)
    message = str(raised.value)
    for said in (f"No job {job.arn} under {tmp_path / 'another-machine'}", "visible only on the machine that ran them",
                 "PREFECT_BRAKET_HOME", "local endpoint", "Amazon Braket"):
        assert said in message
    assert HybridJob.attach(job.arn, engine).state() == "COMPLETED"  # in its own home it is found
