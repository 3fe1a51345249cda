"""The Amazon Braket backend: Braket's API through botocore's Stubber (validated against Braket's
service model), S3 and CloudWatch Logs on moto's server over real HTTP."""

import io
import json
import os
import subprocess
import sys
import tarfile
import threading
from datetime import datetime, timezone
from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber
from prefect import flow

from helpers import examples
from helpers.aws import (
    BUCKET,
    FORTE,
    GET_JOB_PARAMS,
    JOB_ARN,
    ROLE,
    expect_get_device,
    get_job_answer,
    own_account,
    recent_ms,
    s3,
)
from helpers.faults import LosesFirstCreate
from helpers.paths import DATA
from prefect_braket import HybridJob, JobFailedError, JobSpec, hybrid_job
from prefect_braket.backends.aws.backend import AwsBackend, AwsConfigurationError
from prefect_braket.core.archive import UnsafeArchiveError
from prefect_braket.endpoint.app import seed_job_images


def test_create_job_request_for_the_decorator_example(aws, monkeypatch, tmp_path):
    backend, stubber, calls = aws
    seed_job_images(backend.client("ecr", "us-east-1"))  # Braket's images, with this Python, in moto's ECR
    expect_get_device(stubber)
    stubber.add_response("create_job", {"jobArn": JOB_ARN})
    job = hybrid_job(device=FORTE, backend=backend, job_name="train-example", role_arn=ROLE, tags={"team": "quantum"})(
        examples.train)(num_tasks=5)
    assert job.arn == JOB_ARN
    (checked, _), (name, request) = calls
    assert (checked, name) == ("GetDevice", "CreateJob")
    script = request["algorithmSpecification"]["scriptModeConfig"]
    root = script["s3Uri"].rsplit("/script/", 1)[0]
    assert root.startswith(f"s3://{BUCKET}/jobs/train-example/") and root.rsplit("/", 1)[1].isdigit()
    assert script["s3Uri"] == f"{root}/script/source.tar.gz"
    assert script["compressionType"] == "GZIP"
    module, function = script["entryPoint"].split(":")
    assert function == "train" and module.startswith("decorator_job_") and module.endswith(".entry_point")
    assert request["algorithmSpecification"]["containerImage"] == {
        "uri": "292282985366.dkr.ecr.us-east-1.amazonaws.com/amazon-braket-base-jobs:latest"}
    assert request["jobName"] == "train-example" and request["roleArn"] == ROLE
    assert request["instanceConfig"] == {"instanceType": "ml.m5.large", "volumeSizeInGb": 30, "instanceCount": 1}
    assert request["outputDataConfig"] == {"s3Path": f"{root}/data"}
    assert request["checkpointConfig"] == {"localPath": "/opt/jobs/checkpoints", "s3Uri": f"{root}/checkpoints"}
    assert request["deviceConfig"] == {"device": FORTE}
    assert request["hyperParameters"] == {"num_tasks": "5", "lr": "0.1"}
    assert request["stoppingCondition"] == {"maxRuntimeInSeconds": 432000}
    assert request["tags"] == {"team": "quantum"}
    assert 1 <= len(request["clientToken"]) <= 64
    assert request["inputDataConfig"] == [] and "associations" not in request  # [] as Braket's SDK sends it

    # The source went to the S3 layout; it runs with neither this package nor Braket's SDK.
    key = script["s3Uri"].split(f"{BUCKET}/", 1)[1]
    archive = s3(backend).get_object(Bucket=BUCKET, Key=key)["Body"].read()
    extracted = tmp_path / "code"
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(extracted, filter="data")
    package = extracted / module.split(".")[0]
    requirements = (package / "requirements.txt").read_text().split()
    assert requirements == [f"cloudpickle=={__import__('cloudpickle').__version__}"]
    isolated = tmp_path / "isolated"
    isolated.mkdir()
    import cloudpickle

    os.symlink(Path(cloudpickle.__file__).parent, isolated / "cloudpickle")
    results, checkpoints = tmp_path / "model", tmp_path / "checkpoints"
    results.mkdir()
    env = {"AMZN_BRAKET_JOB_RESULTS_DIR": str(results), "AMZN_BRAKET_CHECKPOINT_DIR": str(checkpoints),
           "AMZN_BRAKET_JOB_NAME": "train-example", "PATH": os.environ["PATH"]}
    # Only the extracted source and cloudpickle: none of this environment's site-packages.
    code = (f"import sys; sys.path[:] = [{str(isolated)!r}, {str(extracted)!r}] "
            "+ [p for p in sys.path if 'site-packages' not in p]; "
            f"import importlib; importlib.import_module({module!r}).train()")
    run = subprocess.run([sys.executable, "-S", "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "Metrics - timestamp=" in run.stdout and "theta=0.5; iteration_number=4;" in run.stdout
    saved = json.loads((results / "results.json").read_text())
    assert saved["dataDictionary"] == {"final_theta": pytest.approx(0.5)}
    assert json.loads((checkpoints / "train-example.json").read_text())["dataDictionary"]["i"] == 4


def test_python_mismatch_is_refused_before_anything_is_uploaded(aws, monkeypatch):
    backend, stubber, calls = aws
    ecr = Stubber(backend.client("ecr", "us-east-1"))  # ECR says the base image runs Python 3.99
    ecr.activate()
    image = {"imageId": {"imageDigest": "sha256:" + "0" * 64, "imageTag": "1.0-cpu-py399-ubuntu24.04"}}
    for _ in range(2):  # the image by its tag, then its digest's tags
        ecr.add_response("batch_get_image", {"images": [image], "failures": []})
    refusal = r"pickled by Python 3\.\d+, but Braket's job image .* runs Python 3.99 \(its tag 1.0-cpu-py399.*image_uri"
    with pytest.raises(AwsConfigurationError, match=refusal):
        hybrid_job(device=FORTE, backend=backend, role_arn=ROLE)(lambda: 1)()
    assert calls == []


def test_role_is_looked_up_once_or_named_when_missing(aws, aws_session):
    backend, _, _ = aws
    account = own_account(aws_session)  # an account with no role yet, whatever other tests made
    iam = backend.client("iam", "us-east-1")
    with pytest.raises(AwsConfigurationError, match="No execution role.*AmazonBraketJobsExecutionRole.*role_arn="):
        backend.role_arn(None)
    created = iam.create_role(RoleName="AmazonBraketJobsExecutionRole-test", Path="/service-role/",
                              AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    assert created.startswith(f"arn:aws:iam::{account}:") and backend.role_arn(None) == created
    assert backend.role_arn("arn:aws:iam::123456789012:role/given") == "arn:aws:iam::123456789012:role/given"


def test_default_bucket_is_created_in_the_region(aws_session, moto_endpoint):
    backend = AwsBackend(session=aws_session, region="eu-north-1", endpoint_url=moto_endpoint)
    bucket = backend.default_bucket()
    assert bucket == "amazon-braket-eu-north-1-123456789012"
    location = backend.client("s3", "eu-north-1").get_bucket_location(Bucket=bucket)["LocationConstraint"]
    assert location == "eu-north-1"
    assert AwsBackend(session=aws_session, region="eu-north-1", endpoint_url=moto_endpoint).default_bucket() == bucket


class LosesFirstResponse(LosesFirstCreate, AwsBackend):
    pass


def test_retried_submission_sends_the_same_token_and_finds_the_same_job(aws, aws_session, moto_endpoint, monkeypatch):
    backend, stubber, calls = aws
    seed_job_images(backend.client("ecr", "us-east-1"))  # Braket's images, with this Python, in moto's ECR
    lossy = LosesFirstResponse(session=aws_session, region="us-east-1", endpoint_url=moto_endpoint,
                               braket_client=backend.braket())
    # Braket throttles the first CreateJob; botocore retries it with the same token.
    expect_get_device(stubber)
    stubber.add_client_error("create_job", service_error_code="ThrottlingException", http_status_code=400)
    stubber.add_response("create_job", {"jobArn": JOB_ARN})
    square = hybrid_job(device=FORTE, backend=lossy, role_arn=ROLE)(lambda x: x * x)

    @flow
    def submit():
        return square(4)

    assert submit().arn == JOB_ARN
    assert LosesFirstResponse.lost == 1  # the task failed once and was retried by Prefect
    tokens = [params["clientToken"] for name, params in calls if name == "CreateJob"]
    assert len(tokens) == 2 and len(set(tokens)) == 1  # no second job: the retry found the recorded ARN
    recorded = s3(backend).get_object(Bucket=BUCKET, Key=f"jobs/.client-tokens/{tokens[0]}.json")
    record = json.loads(recorded["Body"].read())
    assert record["jobArn"] == JOB_ARN and record["request"]["clientToken"] == tokens[0]


def _put_archive(backend, members, key="jobs/train-example/1/data/output/model.tar.gz"):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    backend.default_bucket()
    s3(backend).put_object(Bucket=BUCKET, Key=key, Body=buffer.getvalue())


def test_results_download_into_private_directories_in_parallel(aws, monkeypatch, tmp_path):
    backend, stubber, _ = aws
    monkeypatch.chdir(tmp_path)
    document = {"braketSchemaHeader": {"name": "braket.jobs_data.persisted_job_data", "version": "1"},
                "dataDictionary": {"final_theta": 0.5}, "dataFormat": "plaintext"}
    _put_archive(backend, [("results.json", json.dumps(document).encode()), ("plot.txt", b"x")])
    for _ in range(8):
        stubber.add_response("get_job", get_job_answer(), GET_JOB_PARAMS)
    job = HybridJob(JOB_ARN, backend)
    results = []
    threads = [threading.Thread(target=lambda: results.append(job.fetch_result())) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [{"final_theta": 0.5}] * 4
    assert list(tmp_path.iterdir()) == []  # nothing written to the working directory


@pytest.mark.parametrize("member", ["../../escape.txt", "absolute"])
def test_crafted_result_archive_is_refused(aws, tmp_path, member):
    backend, stubber, _ = aws
    victim = tmp_path / "victim" / "abs.txt"  # an absolute name of this test's own, nobody else's file
    name = str(victim) if member == "absolute" else member
    _put_archive(backend, [("results.json", b"{}"), (name, b"owned")])
    for _ in range(2):
        stubber.add_response("get_job", get_job_answer(), GET_JOB_PARAMS)
    with pytest.raises(UnsafeArchiveError, match=name.lstrip("/")):
        HybridJob(JOB_ARN, backend).fetch_result()
    assert not victim.parent.exists()


def test_failed_job_raises_with_reason_and_log_tail(aws, aws_session):
    backend, stubber, _ = aws
    own_account(aws_session)  # its own log group and stream, whatever other tests made
    logs = backend.client("logs")
    logs.create_log_group(logGroupName="/aws/braket/jobs")
    stream = f"train-example/{JOB_ARN.rsplit('/', 1)[1]}/algo-1-1700000000"
    logs.create_log_stream(logGroupName="/aws/braket/jobs", logStreamName=stream)
    logs.put_log_events(logGroupName="/aws/braket/jobs", logStreamName=stream,
                        logEvents=[{"timestamp": recent_ms() + i, "message": f"line {i}"} for i in range(3)])
    failed = get_job_answer("FAILED", failureReason="AlgorithmError: ValueError: diverged")
    for _ in range(3):
        stubber.add_response("get_job", failed, GET_JOB_PARAMS)
    with pytest.raises(JobFailedError, match="FAILED: AlgorithmError: ValueError: diverged") as caught:
        HybridJob(JOB_ARN, backend).fetch_result()
    assert caught.value.log_tail == ["line 0", "line 1", "line 2"]


def test_log_tailer_survives_a_missing_stream_and_pages_past_10000_events(aws, aws_session):
    backend, stubber, _ = aws
    own_account(aws_session)  # no log group yet
    stubber.add_response("get_job", get_job_answer("RUNNING"), GET_JOB_PARAMS)
    logs = backend.client("logs")
    empty = backend.read_log(JOB_ARN)
    assert empty.lines == []
    logs.create_log_group(logGroupName="/aws/braket/jobs")
    assert backend.read_log(JOB_ARN, empty.cursor).lines == []  # the group exists, the stream not yet
    stream = f"train-example/{JOB_ARN.rsplit('/', 1)[1]}/algo-1-1700000000"
    logs.create_log_stream(logGroupName="/aws/braket/jobs", logStreamName=stream)
    start = recent_ms()
    for first in range(0, 10500, 5000):
        batch = [{"timestamp": start + i, "message": f"event {i}"} for i in range(first, min(first + 5000, 10500))]
        logs.put_log_events(logGroupName="/aws/braket/jobs", logStreamName=stream, logEvents=batch)
    chunk = backend.read_log(JOB_ARN, empty.cursor)
    assert len(chunk.lines) == 10500
    assert chunk.lines[0] == "event 0" and chunk.lines[-1] == "event 10499"
    assert chunk.timestamps[0] == pytest.approx(start / 1000)
    assert backend.read_log(JOB_ARN, chunk.cursor).lines == []
    logs.put_log_events(logGroupName="/aws/braket/jobs", logStreamName=stream,
                        logEvents=[{"timestamp": start + 20000, "message": "Metrics - loss=0.5; iteration_number=3;"}])
    assert backend.read_log(JOB_ARN, chunk.cursor).lines == ["Metrics - loss=0.5; iteration_number=3;"]


def test_log_tailer_merges_the_streams_of_a_job_in_time_order(aws, aws_session):
    """A job on several instances writes a stream each: a read brings every stream's new lines,
    merged in time order; a stream that appears later is read from its start."""
    backend, stubber, _ = aws
    own_account(aws_session)
    stubber.add_response("get_job", get_job_answer("RUNNING"), GET_JOB_PARAMS)
    logs = backend.client("logs")
    logs.create_log_group(logGroupName="/aws/braket/jobs")
    job_id = JOB_ARN.rsplit("/", 1)[1]
    start = recent_ms()

    def write(instance, times, job=job_id):
        stream = f"train-example/{job}/algo-{instance}-1700000000"
        try:
            logs.create_log_stream(logGroupName="/aws/braket/jobs", logStreamName=stream)
        except logs.exceptions.ResourceAlreadyExistsException:
            pass
        logs.put_log_events(logGroupName="/aws/braket/jobs", logStreamName=stream, logEvents=[
            {"timestamp": start + t, "message": f"{t:03d} algo-{instance}"} for t in times])

    def expected(times, instances):
        return [f"{t:03d} algo-{instances[t % len(instances)]}" for t in times]

    # Interleaved: algo-1 logs the even milliseconds, algo-2 the odd ones (read stream after stream,
    # their lines would not be in time order).
    write(2, range(1, 200, 2))
    write(1, range(0, 200, 2))
    write(1, range(0, 50), job="0ther-job")  # another job's stream, under another prefix
    first = backend.read_log(JOB_ARN)
    assert first.lines == expected(range(200), [1, 2])
    assert first.timestamps == [(start + t) / 1000 for t in range(200)]
    # Both streams grow, and a third instance starts: the next read has all of it, nothing again.
    write(1, range(201, 300, 3))
    write(2, range(202, 300, 3))
    write(3, range(200, 300, 3))
    second = backend.read_log(JOB_ARN, first.cursor)
    assert second.lines == expected(range(200, 300), [1, 2, 3])
    assert backend.read_log(JOB_ARN, second.cursor).lines == []


def test_cancel_of_an_ended_job_returns_its_status(aws):
    backend, stubber, _ = aws
    stubber.add_response("cancel_job", {"jobArn": JOB_ARN, "cancellationStatus": "CANCELLING"}, {"jobArn": JOB_ARN})
    assert backend.cancel_job(JOB_ARN) == "CANCELLING"
    stubber.add_client_error("cancel_job", service_error_code="ConflictException", http_status_code=409)
    stubber.add_response("get_job", get_job_answer("COMPLETED"), GET_JOB_PARAMS)
    assert backend.cancel_job(JOB_ARN) == "COMPLETED"


SV1 = "arn:aws:braket:::device/quantum-simulator/amazon/sv1"
Z_PROGRAM = """OPENQASM 3.0;
input float theta;
qubit[1] q;
rx(theta) q[0];
#pragma braket result expectation z(q[0])
"""


def test_quantum_tasks_on_aws_run_poll_and_read_results_from_s3(moto_endpoint, monkeypatch):
    """Tasks go out as CreateQuantumTask, are polled, and their results.json are read from S3 concurrently."""
    import math

    from prefect_aws import AwsCredentials

    from prefect_braket import BraketDevice
    from prefect_braket.quantum.programs import to_program
    from prefect_braket.quantum.simulators import LocalSimulator

    for name in ("AMZN_BRAKET_JOB_TOKEN", "AMZN_BRAKET_DEVICE_ARN", "AMZN_BRAKET_TASK_RESULTS_S3_URI"):
        monkeypatch.delenv(name, raising=False)
    credentials = AwsCredentials(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1",
                                 aws_client_parameters={"endpoint_url": moto_endpoint})
    device = BraketDevice(device_arn=SV1, aws_credentials=credentials, s3_bucket="results-bucket",
                          s3_prefix="experiment")
    backend = device.backend()
    backend.client("s3").create_bucket(Bucket="results-bucket")
    stubber = Stubber(device.braket_client())
    stubber.activate()
    payloads = json.loads((DATA / "get_device.json").read_text())
    stubber.add_response("get_device", payloads["sv1"], {"deviceArn": SV1})
    thetas = [0.0, 0.5, 1.0, 2.0]
    requests = []
    device.braket_client().meta.events.register(
        "provide-client-params.braket.CreateQuantumTask", lambda params, **kw: requests.append(dict(params)))
    for index, theta in enumerate(thetas):
        arn = f"arn:aws:braket:us-east-1:123456789012:quantum-task/task-{index}"
        stubber.add_response("create_quantum_task", {"quantumTaskArn": arn})
        # What SV1 would write: the local simulator's GateModelTaskResult for the same program.
        _, document, _ = LocalSimulator.run("local:braket/braket_sv", to_program(Z_PROGRAM, {"theta": theta}), 0)
        document["additionalMetadata"]["simulatorMetadata"] = {
            "braketSchemaHeader": {"name": "braket.task_result.simulator_metadata", "version": "1"},
            "executionDuration": 12,
        }
        backend.client("s3").put_object(Bucket="results-bucket", Key=f"experiment/task-{index}/results.json",
                                        Body=json.dumps(document, default=lambda v: getattr(v, "value", str(v))))
    for index in range(len(thetas)):  # the batch polls task by task in order
        stubber.add_response("get_quantum_task", {
            "quantumTaskArn": f"arn:aws:braket:us-east-1:123456789012:quantum-task/task-{index}", "status": "COMPLETED",
            "deviceArn": SV1, "deviceParameters": "{}", "shots": 0, "outputS3Bucket": "results-bucket",
            "outputS3Directory": f"experiment/task-{index}", "createdAt": datetime(2026, 11, 25, tzinfo=timezone.utc),
        })
    results = device.run_batch([Z_PROGRAM] * len(thetas), shots=0, inputs=[{"theta": t} for t in thetas],
                               max_parallel=1)
    assert [r.values[0] for r in results] == pytest.approx([math.cos(t) for t in thetas])
    assert [r.task_arn.rsplit("/", 1)[1] for r in results] == [f"task-{i}" for i in range(len(thetas))]
    assert all(r.cost_usd == pytest.approx(0.075 * 3 / 60) for r in results)  # 12 ms billed as 3 s
    assert device.budget.spent_usd == pytest.approx(sum(r.cost_usd for r in results))
    assert {r["outputS3Bucket"] for r in requests} == {"results-bucket"}
    assert all(r["outputS3KeyPrefix"] == "experiment" and "jobToken" not in r for r in requests)
    assert json.loads(requests[1]["action"])["inputs"] == {"theta": 0.5}
    stubber.assert_no_pending_responses()


def test_input_data_checkpoints_images_and_reservations(aws, monkeypatch, tmp_path):
    backend, stubber, calls = aws
    seed_job_images(backend.client("ecr", "us-east-1"))  # Braket's images, with this Python, in moto's ECR
    client = s3(backend)
    backend.default_bucket()
    earlier = f"s3://{BUCKET}/jobs/earlier/1/checkpoints"
    client.put_object(Bucket=BUCKET, Key="jobs/earlier/1/checkpoints/earlier.json", Body=b'{"i": 3}')
    expect_get_device(stubber)
    checkpoints = {"localPath": "/opt/jobs/checkpoints", "s3Uri": earlier}
    stubber.add_response("get_job", get_job_answer(checkpointConfig=checkpoints), GET_JOB_PARAMS)
    stubber.add_response("create_job", {"jobArn": JOB_ARN.replace("6a4e", "7b5f")})
    (tmp_path / "data.csv").write_text("1,2")
    (tmp_path / "algo.py").write_text("def main():\n    pass\n")
    reservation = "arn:aws:braket:us-east-1:123456789012:reservation/abc"
    spec = JobSpec(job_name="resumed", device=FORTE, source_module=tmp_path / "algo.py", entry_point="algo:main",
                   input_data={"csv": str(tmp_path / "data.csv"), "shared": "s3://other-bucket/shared/"},
                   copy_checkpoints_from_job=JOB_ARN, image_uri="pytorch", role_arn=ROLE, reservation_arn=reservation,
                   python_version=f"{sys.version_info.major}.{sys.version_info.minor}")
    backend.create_job(spec)
    request = [params for name, params in calls if name == "CreateJob"][0]
    root = request["outputDataConfig"]["s3Path"].rsplit("/data", 1)[0]
    assert request["algorithmSpecification"]["containerImage"]["uri"] == (
        "292282985366.dkr.ecr.us-east-1.amazonaws.com/amazon-braket-pytorch-jobs:latest")
    assert request["inputDataConfig"] == [
        {"channelName": "csv", "dataSource": {"s3DataSource": {"s3Uri": f"{root}/data/csv/data.csv"}}},
        {"channelName": "shared", "dataSource": {"s3DataSource": {"s3Uri": "s3://other-bucket/shared/"}}},
    ]
    key = f"{root}/data/csv/data.csv".split(f"{BUCKET}/", 1)[1]
    assert client.get_object(Bucket=BUCKET, Key=key)["Body"].read() == b"1,2"
    copied = request["checkpointConfig"]["s3Uri"].split(f"{BUCKET}/", 1)[1] + "/earlier.json"
    assert client.get_object(Bucket=BUCKET, Key=copied)["Body"].read() == b'{"i": 3}'
    assert request["associations"] == [{"arn": reservation, "type": "RESERVATION_TIME_WINDOW_ARN"}]


def test_retried_batch_sends_the_same_task_tokens(moto_endpoint):
    """A Prefect retry of a batch creates no second set of tasks: each task's token is derived from
    the task run and the program's place in the batch."""
    from prefect_aws import AwsCredentials

    from prefect_braket import BraketDevice, run_quantum_batch

    credentials = AwsCredentials(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1",
                                 aws_client_parameters={"endpoint_url": moto_endpoint})
    device = BraketDevice(device_arn=SV1, aws_credentials=credentials, s3_bucket="token-bucket")
    device.backend().client("s3").create_bucket(Bucket="token-bucket")
    client = device.braket_client()
    stubber = Stubber(client)
    stubber.activate()
    payloads = json.loads((DATA / "get_device.json").read_text())
    stubber.add_response("get_device", payloads["sv1"], {"deviceArn": SV1})
    tokens = []
    client.meta.events.register("provide-client-params.braket.CreateQuantumTask",
                                lambda params, **kw: tokens.append(params["clientToken"]))
    # Every attempt finds no results.json, runs the tasks once more (rerun tokens), finds none again
    # and fails; the task run is retried: two attempts, each a run and a rerun.
    for _ in range(4):
        for index in range(2):
            task_arn = f"arn:aws:braket:us-east-1:123456789012:quantum-task/t{index}"
            stubber.add_response("create_quantum_task", {"quantumTaskArn": task_arn})
        for index in range(2):
            stubber.add_response("get_quantum_task", {
                "quantumTaskArn": f"arn:aws:braket:us-east-1:123456789012:quantum-task/t{index}", "status": "COMPLETED",
                "deviceArn": SV1, "deviceParameters": "{}", "shots": 0, "outputS3Bucket": "token-bucket",
                "outputS3Directory": f"tasks/t{index}", "createdAt": datetime(2026, 11, 25, tzinfo=timezone.utc)})
    retried = run_quantum_batch.with_options(retries=1, retry_delay_seconds=0, retry_condition_fn=lambda *_: True)

    @flow
    def batch():
        return retried(device, [Z_PROGRAM, Z_PROGRAM], shots=0, inputs=[{"theta": 0.1}, {"theta": 0.2}],
                       max_parallel=1, return_state=True)

    state = batch(return_state=True)
    assert state.is_failed()  # no results.json in S3, both attempts
    with pytest.raises(FileNotFoundError, match="results.json is missing after 1 rerun"):
        state.result()
    assert len(tokens) == 8 and tokens[:4] == tokens[4:] and tokens[0] != tokens[1]
    assert tokens[2:4] == [f"{token[:56]}-rerun1" for token in tokens[:2]]


def test_s3_file_system_follows_refreshed_credentials():
    """s3fs holds credential values; when an assumed role's credentials are refreshed, the backend's
    file system is made again with the new ones instead of going on with expired ones."""
    from datetime import timedelta

    import botocore.session
    from botocore.credentials import RefreshableCredentials

    issued = []

    def refresh():
        issued.append(f"KEY{len(issued)}")
        # Already inside botocore's refresh window: every read of the credentials refreshes them.
        expiry = datetime.now(timezone.utc) + timedelta(seconds=60)
        return {"access_key": issued[-1], "secret_key": "secret", "token": "token", "expiry_time": expiry.isoformat()}

    core = botocore.session.get_session()
    core._credentials = RefreshableCredentials.create_from_metadata(refresh(), refresh, "assume-role")
    backend = AwsBackend(session=boto3.Session(botocore_session=core, region_name="us-east-1"))
    first = backend.fs
    assert first.key == "KEY1"  # the first read refreshed the initial credentials
    second = backend.fs
    assert second is not first and second.key == issued[-1] != "KEY1"
