"""A careful but hostile user: budgets that must hold, jobs that are not yours, secrets that must stay
home, and bad input that must be refused before anything is created, uploaded or paid for."""

import json
import re
import sys
import tarfile
import threading
import time

import boto3
import pytest
from prefect import flow
from prefect_aws import AwsCredentials
from pydantic import SecretStr

from helpers.servers import endpoint_control
from helpers.waiting import job_count
from prefect_braket import (
    BraketDevice,
    Budget,
    BudgetExceededError,
    DeviceCapabilityError,
    HybridJob,
    hybrid_job,
)
from prefect_braket.backends.aws.backend import AwsBackend, AwsConfigurationError
from prefect_braket.core.spec import default_job_name
from prefect_braket.jobs.budget import SpendingLedger
from prefect_braket.orchestration.ownership import OWNER_TAG
from prefect_braket.orchestration.packaging import CredentialsInJobError
from prefect_braket.quantum.programs import ProgramSyntaxError

FORTE = "arn:aws:braket:us-east-1::device/qpu/ionq/Forte-1"
SV1 = "arn:aws:braket:::device/quantum-simulator/amazon/sv1"
ROLE = "arn:aws:iam::123456789012:role/service-role/AmazonBraketJobsExecutionRole"
BELL = "OPENQASM 3.0;\nqubit[2] q;\nh q[0];\ncnot q[0], q[1];\n"
FORTE_TASK_USD = 0.30 + 0.08 * 100  # a 100-shot task on Forte-1, by the shipped price table


def credentials(endpoint):
    return AwsCredentials(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1",
                          aws_client_parameters={"endpoint_url": endpoint})


def endpoint_tasks(endpoint):
    return endpoint_control(endpoint, "stats")["tasks_created"]


@pytest.fixture
def aws_path(endpoint, monkeypatch):
    """This process, and the jobs it starts on the embedded engine, talk to the local endpoint."""
    for name, value in {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing",
                        "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    return endpoint


# -- budgets ---------------------------------------------------------------------------------------------


def test_a_budget_holds_across_threads_racing_for_it(endpoint):
    device = BraketDevice(device_arn=FORTE, aws_credentials=credentials(endpoint), max_cost_usd=20)
    before = endpoint_tasks(endpoint)
    start = threading.Barrier(8)
    outcomes = []

    def run():
        start.wait()
        try:
            outcomes.append(device.run(BELL, shots=100).cost_usd)
        except BudgetExceededError as error:
            outcomes.append(error)

    threads = [threading.Thread(target=run) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ran = [o for o in outcomes if not isinstance(o, Exception)]
    assert len(ran) == 2 and sum(ran) == pytest.approx(2 * FORTE_TASK_USD)
    assert endpoint_tasks(endpoint) - before == 2
    assert device.budget.spent_usd == pytest.approx(2 * FORTE_TASK_USD)


def test_a_budget_holds_across_task_runs_submitted_at_once(endpoint):
    from prefect_braket import run_quantum_task

    device = BraketDevice(device_arn=FORTE, aws_credentials=credentials(endpoint), max_cost_usd=20)
    programs = [BELL.replace("h q[0];", f"h q[0];\nrz({0.1 * i}) q[1];") for i in range(4)]  # no cache hits

    @flow
    def sweep():
        futures = [run_quantum_task.with_options(retries=0).submit(device, p, shots=100) for p in programs]
        for future in futures:
            future.wait()
        return [f.state for f in futures]

    states = sweep()
    assert sum(s.is_completed() for s in states) == 2
    assert device.budget.spent_usd == pytest.approx(2 * FORTE_TASK_USD)


def test_every_load_of_a_saved_block_spends_one_budget(endpoint, engine):
    BraketDevice(device_arn=FORTE, aws_credentials=credentials(endpoint), max_cost_usd=10).save(
        "security-forte", overwrite=True)
    spent = []
    for _ in range(3):
        device = BraketDevice.load("security-forte")
        try:
            spent.append(device.run(BELL, shots=100).cost_usd)
        except BudgetExceededError as error:
            assert "already spent" in str(error)
    assert spent == [pytest.approx(FORTE_TASK_USD)]
    ledger = json.loads(next((engine.root / "budgets").glob("*.json")).read_text())
    assert ledger["spent_usd"] == pytest.approx(FORTE_TASK_USD)
    fresh = BraketDevice.load("security-forte")
    fresh.budget.reset()
    assert fresh.run(BELL, shots=100).cost_usd == pytest.approx(FORTE_TASK_USD)


def test_a_batch_reserves_its_whole_cost_before_its_first_task(endpoint):
    device = BraketDevice(device_arn=FORTE, aws_credentials=credentials(endpoint), max_cost_usd=FORTE_TASK_USD * 2.5)
    before = endpoint_tasks(endpoint)
    with pytest.raises(BudgetExceededError, match=r"batch of 3 100-shot tasks .* estimated at \$24\.9000"):
        device.run_batch([BELL] * 3, shots=100)
    assert endpoint_tasks(endpoint) == before and device.budget.spent_usd == 0.0
    assert len(device.run_batch([BELL] * 2, shots=100)) == 2


def test_one_budget_shared_by_several_devices(endpoint):
    shared = Budget(max_cost_usd=FORTE_TASK_USD * 1.5)
    first = BraketDevice(device_arn=FORTE, aws_credentials=credentials(endpoint), budget=shared)
    second = BraketDevice(device_arn=FORTE, aws_credentials=credentials(endpoint), budget=shared)
    first.run(BELL, shots=100)
    with pytest.raises(BudgetExceededError):
        second.run(BELL, shots=100)
    assert second.budget is shared and shared.spent_usd == pytest.approx(FORTE_TASK_USD)


def test_a_damaged_ledger_is_an_error_not_a_fresh_start(tmp_path):
    path = tmp_path / "budget.json"
    path.write_text('{"spent_usd": "lots"')
    with pytest.raises(RuntimeError, match=rf"ledger {path} is damaged.*remove it"):
        Budget(5.0, ledger=SpendingLedger(path)).reserve(1.0, "a task")


def test_a_jobs_budget_stops_its_tasks(aws_path, engine):
    """The job's own tasks, on an AWS device, reserve against its max_cost_usd: the third is refused."""

    @hybrid_job(device=FORTE, local=True, max_cost_usd=FORTE_TASK_USD * 2.5)
    def spend(tasks: int = 5):
        device = BraketDevice(device_arn=FORTE)
        for _ in range(tasks):
            device.run(BELL, shots=100)

    before = endpoint_tasks(aws_path)
    job = spend()
    meta = job.wait_until_complete(timeout_seconds=120, poll_interval_seconds=0.2)
    assert meta["status"] == "FAILED"
    assert meta["failureReason"].startswith("AlgorithmError: BudgetExceededError: A 100-shot task on")
    assert "would pass the job's max_cost_usd of $20.75" in meta["failureReason"]
    assert endpoint_tasks(aws_path) - before == 2


def test_a_jobs_budget_counts_instance_time_and_stops_it(endpoint, tmp_path, monkeypatch):
    from prefect_braket.quantum.cost import PriceTable

    prices = dict(PriceTable.default().table, job_instance_per_hour={"ml.m5.large": 36.0})  # a cent a second
    (tmp_path / "prices.json").write_text(json.dumps(prices))
    monkeypatch.setenv("PREFECT_BRAKET_PRICES", str(tmp_path / "prices.json"))
    backend = AwsBackend(session=boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                                               region_name="us-east-1"), region="us-east-1", endpoint_url=endpoint)

    @hybrid_job(device=SV1, backend=backend, role_arn=ROLE, max_cost_usd=0.02)
    def idle():
        import time

        time.sleep(120)

    started = time.monotonic()
    job = idle()
    meta = job.wait_until_complete(timeout_seconds=90, poll_interval_seconds=0.3)
    assert meta["status"] == "FAILED", meta
    assert meta["failureReason"].startswith("AlgorithmError: BudgetExceededError: The job was stopped")
    assert "past its max_cost_usd of $0.02" in meta["failureReason"]
    assert time.monotonic() - started < 60  # stopped after about 2 s of instance time, not after 120


def test_a_jobs_budget_needs_the_price_of_its_instance(endpoint):
    from prefect_braket import InstanceConfig

    backend = AwsBackend(session=boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                                               region_name="us-east-1"), region="us-east-1", endpoint_url=endpoint)
    job = hybrid_job(device=SV1, backend=backend, role_arn=ROLE, max_cost_usd=1.0,
                     instance_config=InstanceConfig(instanceType="ml.p4d.24xlarge"))(lambda: 1)
    with pytest.raises(ValueError, match="max_cost_usd needs the price of the job's instance.*ml.p4d.24xlarge"):
        job()
    with pytest.raises(ValueError, match="max_cost_usd=-1 must be a number"):
        hybrid_job(device=SV1, max_cost_usd=-1)


# -- whose job it is ---------------------------------------------------------------------------------------


@hybrid_job(device="local:braket/braket_sv")
def nap(seconds: float = 6.0):
    import time

    time.sleep(seconds)
    return {"slept": seconds}


def test_a_flow_that_only_watches_a_job_never_cancels_it(engine):
    owned = nap()  # submitted outside any flow: nobody's to cancel but its owner's

    @flow
    def watcher(arn: str):
        return HybridJob.attach(arn).result(poll_timeout_seconds=1, poll_interval_seconds=0.1)

    state = watcher(owned.arn, return_state=True)
    assert state.is_failed() and "did not end within 1" in str(state.result(raise_on_failure=False))
    assert owned.state() in ("QUEUED", "RUNNING")
    assert owned.result(poll_interval_seconds=0.2) == {"slept": 6.0}


def test_a_flow_that_submitted_a_job_cancels_it_when_its_wait_times_out(engine):
    submitted = []

    @flow
    def owner():
        job = nap(30.0)
        submitted.append(job)
        return job.result(poll_timeout_seconds=1, poll_interval_seconds=0.1)

    state = owner(return_state=True)
    assert state.is_failed()
    job = submitted[0]
    assert job.metadata()["tags"][OWNER_TAG] == str(state.state_details.flow_run_id)
    assert job.wait_until_complete(timeout_seconds=20, poll_interval_seconds=0.1)["status"] == "CANCELLED"


WATCHING_FLOW = """
import signal
import sys
from prefect import flow

# Ctrl-C as a terminal gives it: a command a non-interactive shell starts in the background (a CI
# run, say) ignores SIGINT, its children inherit that, and Python then installs no KeyboardInterrupt.
signal.signal(signal.SIGINT, signal.default_int_handler)
from prefect_braket import HybridJob

@flow
def watch(arn: str):
    job = HybridJob.attach(arn)
    return job.result(poll_interval_seconds=0.1)

watch(sys.argv[1])
"""


@pytest.mark.parametrize("signum", ["SIGINT", "SIGTERM"])
def test_interrupting_a_flow_that_only_watches_a_job_leaves_it_running(engine, tmp_path, signum):
    import os
    import signal
    import subprocess

    from prefect.settings import PREFECT_API_URL

    owned = nap(120.0)
    script = tmp_path / "watching_flow.py"
    script.write_text(WATCHING_FLOW)
    env = dict(os.environ, PREFECT_API_URL=PREFECT_API_URL.value())
    process = subprocess.Popen([sys.executable, str(script), owned.arn], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        # Interrupted once its wait polls, which is what this test is about.
        seen = []
        while not (seen and seen[-1].rstrip().endswith(" is RUNNING")):
            line = process.stdout.readline()
            assert line, f"the watching flow ended before its wait polled: {''.join(seen)[-2000:]}"
            seen.append(line)
        process.send_signal(getattr(signal, signum))
        process.wait(timeout=30)
    finally:
        process.kill()
    assert owned.state() in ("QUEUED", "RUNNING")  # the job's owner (this test) ends it
    assert owned.cancel() == "CANCELLING"


# -- secrets -------------------------------------------------------------------------------------------------


KEYED = {"aws_access_key_id": "AKIAEXAMPLEKEYID0001", "aws_secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYSECRET",
         "aws_session_token": "FwoGZXIvYXdzEXAMPLESESSIONTOKEN"}


def _source_bytes(engine, job):
    with tarfile.open(engine.job_directory(job.arn) / "script" / "source.tar.gz") as tar:
        return b"".join(tar.extractfile(m).read() for m in tar.getmembers() if m.isfile())


def test_credentials_in_a_job_argument_never_travel_into_the_job(engine):
    device = BraketDevice(device_arn=SV1, aws_credentials=AwsCredentials(region_name="us-east-1", **KEYED))

    @hybrid_job(device="local:braket/braket_sv")
    def look(target: BraketDevice):
        return {"credentials": repr(target.aws_credentials), "arn": target.device_arn}

    job = look(device)
    assert job.result(poll_interval_seconds=0.1) == {"credentials": "None", "arn": SV1}
    shipped = _source_bytes(engine, job)
    log = engine.job_directory(job.arn).joinpath("log.txt").read_text()
    shown = json.dumps(job.metadata()["hyperParameters"]) + log
    for secret in KEYED.values():
        assert secret.encode() not in shipped
        assert secret not in shown
    assert "keys hidden" in job.metadata()["hyperParameters"]["target"]


def test_credentials_passed_alone_are_dropped_and_shown_by_type(engine):
    @hybrid_job(device="local:braket/braket_sv")
    def given(creds=None):
        return {"creds": repr(creds)}

    job = given(AwsCredentials(**KEYED))
    assert job.result(poll_interval_seconds=0.1) == {"creds": "None"}
    assert job.metadata()["hyperParameters"]["creds"] == "<AwsCredentials: not shipped>"
    assert KEYED["aws_secret_access_key"].encode() not in _source_bytes(engine, job)


def test_other_secrets_are_refused_before_anything_is_created(engine):
    @hybrid_job(device="local:braket/braket_sv")
    def leaky(password=None):
        return 1

    with pytest.raises(CredentialsInJobError, match="SecretStr would travel inside the job's code"):
        leaky(SecretStr("hunter2"))
    session = boto3.Session(aws_access_key_id="AKIA", aws_secret_access_key="secret", region_name="us-east-1")
    with pytest.raises(CredentialsInJobError, match="Credentials would travel"):
        leaky(session.get_credentials())
    assert job_count(engine) == 0


# -- bad input -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("device", ["", None, "local:braket/nope", "arn:aws:braket:::device/qpu/nope", 7])
def test_a_device_that_does_not_exist_is_refused_at_decoration(engine, device):
    with pytest.raises(ValueError, match=r"Device ARN .* is not one Braket knows: use 'local:braket/braket_sv'"):
        hybrid_job(device=device)(lambda: 1)
    assert job_count(engine) == 0


def test_an_unknown_aws_device_is_refused_before_the_code_is_uploaded(endpoint):
    session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
    backend = AwsBackend(session=session, region="us-east-1", endpoint_url=endpoint)
    s3 = backend.client("s3")
    bucket = backend.default_bucket()

    def keys():
        return [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]

    before = keys()
    nowhere = "arn:aws:braket:us-east-1::device/qpu/ionq/Nowhere-9"
    for image in (None, "pytorch"):
        with pytest.raises(AwsConfigurationError, match=f"Braket has no device {nowhere} in us-east-1"):
            hybrid_job(device=nowhere, backend=backend, role_arn=ROLE, image_uri=image)(lambda: 1)()
    assert keys() == before


def test_malformed_openqasm_names_the_line_and_what_is_missing(endpoint):
    broken = "OPENQASM 3.0;\nqubit[2] q;\nh q[0]\ncnot q[0], q[1];\n"
    with pytest.raises(ProgramSyntaxError, match=r"on line 4 at 'cnot', in `cnot q\[0\], q\[1\];`: expected ';'"):
        BraketDevice().run(broken, shots=10)
    before = endpoint_tasks(endpoint)
    with pytest.raises(ProgramSyntaxError):
        BraketDevice(device_arn=SV1, aws_credentials=credentials(endpoint)).run(broken, shots=10)
    braket = boto3.client("braket", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                          aws_secret_access_key="testing")
    action = json.dumps({"braketSchemaHeader": {"name": "braket.ir.openqasm.program", "version": "1"},
                         "source": broken})
    with pytest.raises(braket.exceptions.ValidationException, match="expected ';'"):
        braket.create_quantum_task(deviceArn=SV1, action=action, shots=10, outputS3Bucket="amazon-braket-x",
                                   outputS3KeyPrefix="tasks", clientToken="malformed-1")
    assert endpoint_tasks(endpoint) == before


def test_local_simulators_take_no_more_shots_than_braket_simulators():
    started = time.monotonic()
    refusal = r"1000000000 shots is outside what braket_sv takes \(0 to 100000\)"
    with pytest.raises(DeviceCapabilityError, match=refusal):
        BraketDevice().run(BELL, shots=10**9)
    assert time.monotonic() - started < 10  # refused, not simulated
    assert BraketDevice().run(BELL, shots=100_000).measurement_counts.total() == 100_000


# -- names ------------------------------------------------------------------------------------------------------


def test_default_job_names_are_unique_when_made_together():
    start = threading.Barrier(20)
    names = []

    def name():
        start.wait()
        names.append(default_job_name(nap.__wrapped__))

    threads = [threading.Thread(target=name) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(names)) == 20
    assert all(re.fullmatch(r"nap-\d{13}-[0-9a-f]{4}", n) for n in names)
    assert len({default_job_name("x") for _ in range(2000)}) == 2000
    with pytest.warns(UserWarning, match="cut to 31 characters"):
        assert len(default_job_name("a" * 80)) == 50


def test_the_decorator_and_the_job_block_name_jobs_that_way(engine, tmp_path):
    from prefect_braket import BraketHybridJob

    assert re.fullmatch(r"nap-\d{13}-[0-9a-f]{4}", nap(0.0).name)
    (tmp_path / "algo.py").write_text("def main():\n    pass\n")
    spec = BraketHybridJob(source_module=str(tmp_path / "algo.py"), entry_point="algo:main").job_spec()
    assert re.fullmatch(r"algo-\d{13}-[0-9a-f]{4}", spec.job_name)
