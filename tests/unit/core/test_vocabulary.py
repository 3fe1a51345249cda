"""The shared vocabulary: ARNs read once, backends chosen by name, waits that back off."""

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)

from prefect_braket.backends.registry import (
    BACKENDS,
    backend_for,
    backend_name,
    register_backend,
)
from prefect_braket.core.arns import (
    DeviceArn,
    device_region,
    is_qpu,
    resource_region,
    split_s3_uri,
)
from prefect_braket.core.errors import (
    JobStateError,
    PrefectBraketError,
    SubmissionInProgress,
    is_transient,
)
from prefect_braket.core.polling import Backoff
from prefect_braket.quantum.devices import DeviceUnavailableError

FORTE = "arn:aws:braket:us-east-1::device/qpu/ionq/Forte-1"
SV1 = "arn:aws:braket:::device/quantum-simulator/amazon/sv1"


def test_device_arns_are_read_once():
    forte = DeviceArn.parse(FORTE)
    assert (forte.local, forte.is_qpu, forte.provider, forte.name, forte.region) == (False, True, "ionq", "Forte-1",
                                                                                    "us-east-1")
    assert forte.slug == "ionq-Forte-1"
    sv1 = DeviceArn.parse(SV1)
    assert (sv1.is_qpu, sv1.region) == (False, None)
    local = DeviceArn.parse("local:braket/braket_dm")
    assert (local.local, local.is_qpu, local.name) == (True, False, "braket_dm")
    assert device_region(FORTE) == "us-east-1" and device_region(SV1) is None and is_qpu(FORTE)
    for wrong in ("", None, "local:braket/nope", "arn:aws:braket:::device/qpu/nope", 3):
        with pytest.raises(ValueError, match="is not one Braket knows"):
            DeviceArn.parse(wrong)


def test_job_and_task_arns_give_their_region():
    assert resource_region("arn:aws:braket:eu-north-1:123456789012:job/abc") == "eu-north-1"
    assert resource_region("arn:aws:braket:us-west-1:123456789012:quantum-task/x-y") == "us-west-1"
    with pytest.raises(ValueError, match="not a Braket job or task ARN"):
        resource_region(FORTE)
    assert split_s3_uri("s3://bucket/a/b/") == ("bucket", "a/b")
    with pytest.raises(ValueError, match="not an S3 URI"):
        split_s3_uri("/tmp/x")


def test_backends_are_chosen_by_name(tmp_path):
    assert backend_name("local:braket/braket_sv") == "local"
    assert backend_name(FORTE) == "aws" and backend_name(FORTE, local=True) == "local"
    assert backend_name(FORTE, "local") == "local"
    with pytest.raises(ValueError, match="Unknown backend 'docker': use one of aws, local"):
        backend_name(FORTE, "docker")
    engine = backend_for("local:braket/braket_sv", root=tmp_path)
    assert type(engine).__name__ == "LocalEngine" and engine.root == tmp_path
    assert backend_for("arn:aws:braket:eu-north-1:123456789012:job/abc").aws.region == "eu-north-1"
    assert backend_for(FORTE).aws.region == "us-east-1"
    assert (engine.bills_instances, backend_for(FORTE).bills_instances) == (False, True)


def test_a_registered_backend_is_built_by_its_dotted_path(monkeypatch, tmp_path):
    monkeypatch.setitem(BACKENDS, "other", "prefect_braket.backends.local.engine:LocalEngine")
    register_backend("other", "prefect_braket.backends.local.engine:LocalEngine")
    assert backend_for(FORTE, "other", root=tmp_path).root == tmp_path


def test_retryable_is_declared_not_guessed():
    assert is_transient(SubmissionInProgress("still creating")) and not is_transient(JobStateError("damaged"))
    assert is_transient(DeviceUnavailableError("down", "OFFLINE"))
    assert not is_transient(DeviceUnavailableError("gone", "RETIRED"))
    assert isinstance(DeviceUnavailableError("x", "OFFLINE"), PrefectBraketError)

    class Lookalike(Exception):
        retryable = True  # not one of the package's errors: an attribute alone does not make it retried

    assert not is_transient(Lookalike())
    assert is_transient(ConnectionResetError()) and not is_transient(TimeoutError())


def aws_error(code, status, operation="CreateJob"):
    """What botocore raises for an error answer: the code and the HTTP status, as AWS sends them."""
    return ClientError({"Error": {"Code": code, "Message": "..."}, "ResponseMetadata": {"HTTPStatusCode": status}},
                       operation)


@pytest.mark.parametrize("error", [
    aws_error("ThrottlingException", 429),
    aws_error("ThrottlingException", 400),  # Braket's throttling can come as a 400
    aws_error("TooManyRequestsException", 429),
    aws_error("SlowDown", 503, "PutObject"),
    aws_error("InternalServiceException", 500),
    aws_error("SomethingNew", 500),  # any 5xx, whatever its code
    aws_error("ServiceUnavailable", 503),
    EndpointConnectionError(endpoint_url="https://braket.us-east-1.amazonaws.com"),
    ConnectTimeoutError(endpoint_url="https://braket.us-east-1.amazonaws.com"),
    ReadTimeoutError(endpoint_url="https://braket.us-east-1.amazonaws.com"),
], ids=lambda error: type(error).__name__ + (f"-{error.response['Error']['Code']}-"
                                              f"{error.response['ResponseMetadata']['HTTPStatusCode']}"
                                              if isinstance(error, ClientError) else ""))
def test_throttling_5xx_and_dropped_connections_from_aws_are_transient(error):
    assert is_transient(error)


@pytest.mark.parametrize("error", [
    aws_error("ValidationException", 400),
    aws_error("AccessDeniedException", 403),
    aws_error("AccessDenied", 403, "GetObject"),
    aws_error("ResourceNotFoundException", 404),
    aws_error("ConflictException", 409),
    aws_error("DeviceRetiredException", 400),
    aws_error("ServiceQuotaExceededException", 402),
    NoCredentialsError(),
], ids=lambda error: type(error).__name__ + (f"-{error.response['Error']['Code']}"
                                              if isinstance(error, ClientError) else ""))
def test_refusals_from_aws_are_not_transient(error):
    assert not is_transient(error)


def test_waits_back_off_to_their_ceiling_with_jitter():
    backoff = Backoff(max_seconds=1.0, first_seconds=0.1)
    pauses = [backoff.next() for _ in range(12)]
    assert 0.08 <= pauses[0] <= 0.12
    assert all(0.8 <= p <= 1.2 for p in pauses[-3:])  # at the ceiling, within ±20%
    # Grows, jitter aside; each pause paired with the next, so one sequence is a pause shorter.
    assert all(later >= earlier * 0.6 for earlier, later in zip(pauses, pauses[1:], strict=False))
    assert len({round(p, 6) for p in pauses[-3:]}) == 3  # jittered: many waiters do not poll in step
    backoff.reset()
    assert backoff.next() <= 0.12
    assert Backoff(max_seconds=0.01).next() <= 0.012  # a ceiling below the first pause caps it
