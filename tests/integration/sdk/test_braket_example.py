"""Braket's documented hybrid-job example, its import changed to prefect_braket, runs unchanged and
offline: on the local endpoint through the AWS backend, and with `local=True` on the embedded
engine (its Braket calls to an endpoint its environment names, or to one of its own), inside and
outside a Prefect flow, with its metrics, its result and its device's priority for its tasks.
Beside it: the S3 variables a job sees, a module the job's Python lacks named with the fix, the
image's Python read from ECR as Braket's SDK reads it, and the CreateJob request the same as the
SDK's for the same job."""

import importlib.util
import json
import re
import sys

import boto3
import pytest
from botocore.stub import Stubber
from prefect import flow

from helpers.modules import import_source
from prefect_braket import JobFailedError, hybrid_job
from prefect_braket.backends.aws.backend import AwsBackend, AwsConfigurationError
from prefect_braket.backends.local.processes import job_processes

needs_sdk = pytest.mark.skipif(
    importlib.util.find_spec("braket") is None or importlib.util.find_spec("braket.aws") is None,
    reason="Braket's SDK is not installed: pip install amazon-braket-sdk (the test extra pins it)")

# Braket's example (developer guide, "Run your local code as a hybrid job"), its import changed.
EXAMPLE = '''from braket.aws import AwsDevice
from braket.circuits import Circuit, FreeParameter, Observable
from braket.devices import Devices
from braket.jobs.metrics import log_metric
from prefect_braket import hybrid_job

device_arn = Devices.Amazon.SV1

@hybrid_job(device=device_arn)
def example_hybrid_job(num_tasks=1, num_shots=100):
    device = AwsDevice(device_arn)
    circ = Circuit()
    circ.rx(0, FreeParameter("theta"))
    circ.cnot(0, 1)
    circ.expectation(observable=Observable.X(), target=0)
    theta = 0.0
    for i in range(num_tasks):
        task = device.run(circ, shots=num_shots, inputs={"theta": theta})
        exp_val = task.result().values[0]
        theta += exp_val
        log_metric(metric_name="exp_val", value=exp_val, iteration_number=i)
    return {"final_theta": theta, "final_exp_val": exp_val}
'''
SV1 = "arn:aws:braket:::device/quantum-simulator/amazon/sv1"
FORTE = "arn:aws:braket:us-east-1::device/qpu/ionq/Forte-1"
ROLE = "arn:aws:iam::123456789012:role/service-role/AmazonBraketJobsExecutionRole"
ACCOUNT_BUCKET = "amazon-braket-us-east-1-123456789012"
S3_VARIABLES = ("AMZN_BRAKET_OUT_S3_BUCKET", "AMZN_BRAKET_TASK_RESULTS_S3_URI", "AMZN_BRAKET_SCRIPT_S3_URI",
                "AMZN_BRAKET_JOB_RESULTS_S3_PATH")


def example(tmp_path, monkeypatch, *, qpu=False, local=False):
    """The example as a module of its own (its function travels by value, as a user's would), with
    Forte-1 for SV1 when `qpu`, and `local=True` when `local`: nothing else changed."""
    source = EXAMPLE
    if qpu:
        source = source.replace("device_arn = Devices.Amazon.SV1", "device_arn = Devices.IonQ.Forte1")
    if local:
        source = source.replace("@hybrid_job(device=device_arn)", "@hybrid_job(device=device_arn, local=True)")
    return import_source(source, "braket_example", tmp_path, monkeypatch).example_hybrid_job


def braket_client(endpoint):
    return boto3.client("braket", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


@pytest.fixture
def on_the_endpoint(endpoint, monkeypatch):
    """This process and the jobs it starts talk to the local endpoint, whose IAM has the role the
    Braket console creates for jobs: the example needs no role_arn."""
    for name, value in {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing",
                        "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    for name in ("BRAKET_JOBS_ROLE_ARN", "AMZN_BRAKET_OUT_S3_BUCKET", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1",
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    try:
        iam.create_role(RoleName=ROLE.rsplit("/", 1)[1], Path="/service-role/", AssumeRolePolicyDocument="{}")
    except iam.exceptions.EntityAlreadyExistsException:
        pass
    return endpoint


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """Neither an endpoint nor AWS credentials anywhere boto looks: a job's Braket calls go to an
    endpoint of its own."""
    for name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                 "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AMZN_BRAKET_OUT_S3_BUCKET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # nor an instance role, on a CI machine


def check_run(result, metrics, num_tasks):
    """The example's result and metrics: one exp_val per task, the result their sum and the last."""
    assert metrics["iteration_number"] == [float(i) for i in range(num_tasks)]
    assert len(metrics["exp_val"]) == num_tasks and all(-1 <= value <= 1 for value in metrics["exp_val"])
    assert result == {"final_theta": pytest.approx(sum(metrics["exp_val"])),
                      "final_exp_val": pytest.approx(metrics["exp_val"][-1])}


def job_tasks(endpoint, job_arn):
    """The job's quantum tasks on the endpoint, with their queue information."""
    braket = braket_client(endpoint)
    found = braket.search_quantum_tasks(filters=[{"name": "jobArn", "values": [job_arn], "operator": "EQUAL"}])
    return [braket.get_quantum_task(quantumTaskArn=task["quantumTaskArn"], additionalAttributeNames=["QueueInfo"])
            for task in found["quantumTasks"]]


# -- the example, unchanged ------------------------------------------------------------------------


@needs_sdk
def test_the_example_runs_on_the_local_endpoint(on_the_endpoint, tmp_path, monkeypatch):
    job = example(tmp_path, monkeypatch)(num_tasks=2)
    assert job.arn.startswith("arn:aws:braket:us-east-1:123456789012:job/")
    check_run(job.result(poll_interval_seconds=0.5), job.metrics(), 2)
    tasks = job_tasks(on_the_endpoint, job.arn)
    assert len(tasks) == 2
    # Where Braket's container puts a job's tasks: AMZN_BRAKET_TASK_RESULTS_S3_URI, in the job's bucket.
    assert {(t["outputS3Bucket"], t["outputS3Directory"].rsplit("/", 1)[0]) for t in tasks} == {
        (ACCOUNT_BUCKET, f"jobs/{job.name}/tasks")}


@needs_sdk
def test_the_example_on_a_qpu_in_a_flow_has_the_qpus_priority(on_the_endpoint, tmp_path, monkeypatch):
    example_hybrid_job = example(tmp_path, monkeypatch, qpu=True)

    @flow
    def experiment():
        job = example_hybrid_job(num_tasks=2)
        return job.arn, job.result(), job.metrics()

    arn, result, metrics = experiment()
    check_run(result, metrics, 2)
    tasks = job_tasks(on_the_endpoint, arn)
    assert [t["deviceArn"] for t in tasks] == [FORTE, FORTE]
    assert {t["queueInfo"]["queuePriority"] for t in tasks} == {"Priority"}


@needs_sdk
def test_the_example_runs_locally_with_an_endpoint_of_its_own(offline, engine, tmp_path, monkeypatch):
    job = example(tmp_path, monkeypatch, local=True)(num_tasks=2)
    assert job.arn.startswith("local:job/")
    check_run(job.result(poll_interval_seconds=0.5), job.metrics(), 2)
    assert "Braket endpoint on http://127.0.0.1:" in job.logs()  # the job's own, started on its first call
    assert job_processes(engine.job_directory(job.arn) / "instance") == set()  # and ended with it


@needs_sdk
def test_the_example_runs_locally_in_a_flow_against_the_endpoint_its_environment_names(
        on_the_endpoint, engine, tmp_path, monkeypatch):
    example_hybrid_job = example(tmp_path, monkeypatch, qpu=True, local=True)

    @flow
    def experiment():
        job = example_hybrid_job(num_tasks=2)
        return job.arn, job.result(), job.metrics()

    arn, result, metrics = experiment()
    assert arn.startswith("local:job/")
    check_run(result, metrics, 2)
    tasks = job_tasks(on_the_endpoint, arn)  # the embedded job registered its token with the endpoint
    assert len(tasks) == 2 and {t["queueInfo"]["queuePriority"] for t in tasks} == {"Priority"}
    registered = [j for j in json.loads(_control(on_the_endpoint, "job-tokens")) if j["job_arn"] == arn]
    assert registered == [{"job_arn": arn, "device_arn": FORTE, "running": False}]  # withdrawn when it ended


def _control(endpoint, route):
    import urllib.request

    return urllib.request.urlopen(f"{endpoint}/_endpoint/{route}").read()


def _inside_an_endpoint_of_its_own():
    """A job's view of its own endpoint: where its variables point, and its task's queue."""
    import os

    from braket.aws import AwsDevice
    from braket.circuits import Circuit

    task = AwsDevice(os.environ["AMZN_BRAKET_DEVICE_ARN"]).run(Circuit().h(0), shots=10)
    task.result()
    names = (*S3_VARIABLES, "AWS_ENDPOINT_URL", "AMZN_BRAKET_JOB_TOKEN")
    return {"priority": task.metadata()["queueInfo"]["queuePriority"],
            "environment": {name: os.environ.get(name) for name in names}}


@needs_sdk
def test_a_local_job_of_a_qpu_has_its_priority_on_its_own_endpoint(offline, engine):
    job = hybrid_job(device=FORTE, local=True)(_inside_an_endpoint_of_its_own)()
    seen = job.result(poll_interval_seconds=0.5)
    assert seen["priority"] == "Priority"
    environment, stamp = seen["environment"], engine.job_directory(job.arn).name
    root = f"s3://{ACCOUNT_BUCKET}/jobs/{job.name}/{stamp}"
    assert environment == {
        "AMZN_BRAKET_OUT_S3_BUCKET": ACCOUNT_BUCKET,
        "AMZN_BRAKET_TASK_RESULTS_S3_URI": f"s3://{ACCOUNT_BUCKET}/jobs/{job.name}/tasks",
        "AMZN_BRAKET_SCRIPT_S3_URI": f"{root}/script/source.tar.gz",
        "AMZN_BRAKET_JOB_RESULTS_S3_PATH": f"{root}/data/output",
        "AWS_ENDPOINT_URL": environment["AWS_ENDPOINT_URL"],
        "AMZN_BRAKET_JOB_TOKEN": engine.job_token(job.arn),
    }
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", environment["AWS_ENDPOINT_URL"])
    assert job_processes(engine.job_directory(job.arn) / "instance") == set()


# -- what a job sees, and what it lacks ------------------------------------------------------------


def _environment_report():
    import os

    return {name: os.environ.get(name) for name in (*S3_VARIABLES, "AWS_DEFAULT_REGION")}


def test_a_job_on_the_endpoint_sees_the_s3_locations_of_its_create_job(on_the_endpoint):
    backend = AwsBackend(region="us-east-1", endpoint_url=on_the_endpoint)
    job = hybrid_job(device=SV1, backend=backend)(_environment_report)()
    seen = job.result(poll_interval_seconds=0.5)
    meta = job.metadata()
    output = meta["outputDataConfig"]["s3Path"]
    assert seen == {
        "AMZN_BRAKET_OUT_S3_BUCKET": ACCOUNT_BUCKET,
        "AMZN_BRAKET_TASK_RESULTS_S3_URI": f"s3://{ACCOUNT_BUCKET}/jobs/{job.name}/tasks",
        "AMZN_BRAKET_SCRIPT_S3_URI": meta["algorithmSpecification"]["scriptModeConfig"]["s3Uri"],
        "AMZN_BRAKET_JOB_RESULTS_S3_PATH": f"{output}/output",
        "AWS_DEFAULT_REGION": "us-east-1",
    }


def test_a_job_on_a_local_simulator_has_no_s3_locations(engine):
    seen = hybrid_job(device="local:braket/braket_sv")(_environment_report)().result()
    assert {name: seen[name] for name in S3_VARIABLES} == dict.fromkeys(S3_VARIABLES)


def test_a_module_the_jobs_python_lacks_is_named_with_the_fix(engine, tmp_path, monkeypatch):
    # Importable where the job is submitted, not where it runs: as braket.aws is, on an endpoint
    # whose Python has no SDK.
    (tmp_path / "only_where_submitted.py").write_text("def value():\n    return 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    only_where_submitted = importlib.import_module("only_where_submitted")
    job = hybrid_job(device="local:braket/braket_sv")(lambda: only_where_submitted.value())()
    with pytest.raises(JobFailedError) as caught:
        job.result()
    reason = caught.value.failure_reason
    assert reason.startswith("AlgorithmError: ModuleNotFoundError: No module named 'only_where_submitted'. ")
    assert f"which the Python running the job ({sys.executable}" in reason
    assert f"{sys.executable} -m pip install" in reason and "hybrid_job(dependencies=[...])" in reason


# -- the image's Python and the CreateJob request, as Braket's SDK has them ------------------------


@needs_sdk
def test_the_image_python_is_read_from_ecr_as_braket_s_sdk_reads_it(on_the_endpoint):
    from braket.aws import AwsSession

    from prefect_braket.backends.aws.images import image_python_tag, image_uri

    python = f"py{sys.version_info.major}{sys.version_info.minor}"
    for framework, region in (("base", "us-east-1"), ("pytorch", "eu-north-1"), ("cudaq", "us-west-2")):
        image = image_uri(framework, region)
        session = AwsSession(boto3.Session(region_name=region))
        ours = image_python_tag(boto3.client("ecr", region_name=region), image)
        assert ours == session.get_full_image_tag(image) and f"-{python}-" in ours


def test_an_image_whose_python_ecr_cannot_tell_is_taken_for_braket_s_default(aws, tmp_path):
    backend, _, calls = aws
    ecr = Stubber(backend.client("ecr", "us-east-1"))
    ecr.activate()
    ecr.add_client_error("batch_get_image", "AccessDeniedException", "not allowed to read ECR")
    (tmp_path / "algo.py").write_text("def main():\n    pass\n")
    from prefect_braket import JobSpec

    spec = JobSpec(job_name="no-ecr", device=FORTE, source_module=tmp_path / "algo.py", entry_point="algo:main",
                   python_version="3.99")
    with pytest.warns(UserWarning, match="could not be read from ECR .*AccessDenied.*assuming Python 3.12"):
        with pytest.raises(AwsConfigurationError, match=r"pickled by Python 3\.99, .*runs Python 3\.12 "
                                                        r"\(Braket's documented default, as ECR could not be read\)"):
            backend.create_job(spec)
    assert calls == []  # refused before anything reached Braket


def _normalized(request):
    """A CreateJob request without what differs by design between two submissions of one job: its
    name, millisecond, generated module name and client token."""
    text = json.dumps({k: v for k, v in request.items() if k != "clientToken"}, sort_keys=True)
    text = text.replace(request["jobName"], "<name>")
    text = re.sub(r"/jobs/<name>/\d+/", "/jobs/<name>/<ms>/", text)
    return json.loads(re.sub(r"decorator_job_\w+\.entry_point", "<module>.entry_point", text))


class Captured(Exception):
    """Raised with a CreateJob's parameters, before it is sent: no job needs to run."""


def capture_create_job(client):
    def capture(params, **_):
        raise Captured(dict(params))

    client.meta.events.register("provide-client-params.braket.CreateJob", capture)


def parity_job(num_tasks=1, num_shots=100):
    return {"num_tasks": num_tasks, "num_shots": num_shots}


@needs_sdk
def test_the_create_job_request_is_the_sdks_field_by_field(on_the_endpoint, tmp_path, monkeypatch):
    from braket.aws import AwsSession
    from braket.jobs import hybrid_job as sdk_hybrid_job

    monkeypatch.chdir(tmp_path)  # the SDK packs the job in a directory of the working directory
    session = boto3.Session(region_name="us-east-1")
    sdk_session = AwsSession(session)
    capture_create_job(sdk_session.braket_client)
    with pytest.raises(Captured) as sdk:
        sdk_hybrid_job(device=SV1, aws_session=sdk_session)(parity_job)(num_tasks=2)
    backend = AwsBackend(session=session, region="us-east-1", endpoint_url=on_the_endpoint)
    capture_create_job(backend.braket("us-east-1"))
    with pytest.raises(Captured) as ours:
        hybrid_job(device=SV1, backend=backend)(parity_job)(num_tasks=2)
    theirs, mine = (_normalized(c.value.args[0]) for c in (sdk, ours))
    assert set(mine) == set(theirs)
    for field in theirs:
        assert (field, mine[field]) == (field, theirs[field])
    assert mine["inputDataConfig"] == [] and mine["hyperParameters"] == {"num_tasks": "2", "num_shots": "100"}
