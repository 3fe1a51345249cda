"""Where an embedded job's Braket calls go (`backends.local.services.choose`), the `s3://`
variables Braket's container gives a job, and what a caller may set in a job's environment."""

import pytest

from prefect_braket.backends.local.processes import INSTANCE_VARIABLE, SOURCE_VARIABLE
from prefect_braket.backends.local.services import AWS, ENDPOINT, GIVEN, NONE, OWN_ENDPOINT, choose
from prefect_braket.core.layout import container_s3_variables
from prefect_braket.core.spec import JobSpec

SV1 = "arn:aws:braket:::device/quantum-simulator/amazon/sv1"
FORTE = "arn:aws:braket:us-east-1::device/qpu/ionq/Forte-1"
GIVEN_LOCATIONS = {"AMZN_BRAKET_TASK_RESULTS_S3_URI": "s3://bucket/jobs/j/tasks"}


def never(*_):
    raise AssertionError("credentials were looked for, though an earlier rule applies")


@pytest.mark.parametrize(("device", "given", "environment", "credentials", "kind"), [
    # what the engine's caller gave comes first, whatever else the environment has
    (FORTE, GIVEN_LOCATIONS, {"AWS_ENDPOINT_URL": "http://127.0.0.1:1"}, never, GIVEN),
    # a local simulator needs no Braket: no endpoint, no credentials looked for
    ("local:braket/braket_sv", {}, {"AWS_ENDPOINT_URL": "http://127.0.0.1:1"}, never, NONE),
    (SV1, {}, {"AWS_ENDPOINT_URL": "http://127.0.0.1:1"}, never, ENDPOINT),
    (FORTE, {}, {"AWS_ENDPOINT_URL": ""}, lambda: True, AWS),  # an empty endpoint names none
    (FORTE, {}, {}, lambda: True, AWS),
    (SV1, {}, {}, lambda: False, OWN_ENDPOINT),
    (FORTE, {"AMZN_BRAKET_OUT_S3_BUCKET": "b"}, {}, lambda: False, OWN_ENDPOINT),  # not the tasks' location
])
def test_where_an_embedded_jobs_braket_calls_go(device, given, environment, credentials, kind):
    assert choose(device, given, environment, credentials) == kind


def test_the_s3_variables_of_braket_s_container():
    root = "s3://amazon-braket-us-east-1-123456789012/jobs/train/1764582000000"
    assert container_s3_variables("train", f"{root}/script/source.tar.gz", f"{root}/data/") == {
        "AMZN_BRAKET_OUT_S3_BUCKET": "amazon-braket-us-east-1-123456789012",
        "AMZN_BRAKET_TASK_RESULTS_S3_URI": "s3://amazon-braket-us-east-1-123456789012/jobs/train/tasks",
        "AMZN_BRAKET_SCRIPT_S3_URI": f"{root}/script/source.tar.gz",
        "AMZN_BRAKET_JOB_RESULTS_S3_PATH": f"{root}/data/output",
    }


@pytest.mark.parametrize(("environment", "error", "message"), [
    ({INSTANCE_VARIABLE: "/elsewhere"}, ValueError, "PREFECT_BRAKET_INSTANCE_DIR.*sets it itself"),
    ({SOURCE_VARIABLE: "/elsewhere.tar.gz"}, ValueError, "PREFECT_BRAKET_SOURCE_ARCHIVE.*sets it itself"),
    ({"AMZN_BRAKET_OUT_S3_BUCKET": 3}, TypeError, "are strings"),
])
def test_a_callers_environment_is_refused_before_anything_is_created(engine, tmp_path, environment, error, message):
    (tmp_path / "algo.py").write_text("def main():\n    pass\n")
    spec = JobSpec(job_name="refused", device=FORTE, source_module=tmp_path / "algo.py", entry_point="algo:main")
    with pytest.raises(error, match=message):
        engine.create_job(spec, environment=environment)
    assert not (engine.root / "jobs").exists()
