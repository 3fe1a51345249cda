"""Braket's SDK against the local endpoint, pointed at it as a Braket user points it at AWS: by
the environment (`AWS_ENDPOINT_URL`, credentials, region), with no mock in between."""

import pytest


@pytest.fixture(scope="module")
def braket_endpoint(endpoint):
    """The endpoint's URL, with the environment set for Braket's SDK to reach it in us-east-1."""
    with pytest.MonkeyPatch.context() as patch:
        for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AMZN_BRAKET_OUT_S3_BUCKET",
                     "BRAKET_ENDPOINT", "BRAKET_JOBS_ROLE_ARN"):
            patch.delenv(name, raising=False)
        patch.setenv("AWS_ENDPOINT_URL", endpoint)
        patch.setenv("AWS_ACCESS_KEY_ID", "testing")
        patch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        patch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        yield endpoint
