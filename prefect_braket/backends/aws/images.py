"""The container images Braket runs jobs in, and the one question they raise: the Python version.

A job names one of Braket's images by framework ("base", "pytorch", "tensorflow", "cudaq"), or
gives an image URI of its own. A decorated function travels pickled, and cloudpickle needs the
same Python on both sides: a job pickled by another Python than Braket's images run
(`IMAGE_PYTHON`) is refused before anything is uploaded. A custom image is the user's to match.
"""

from __future__ import annotations

from prefect_braket.backends.aws.session import AwsConfigurationError
from prefect_braket.core.spec import JobSpec

IMAGE_ACCOUNT = "292282985366"
IMAGE_REPOSITORIES = {
    "base": "amazon-braket-base-jobs",
    "pytorch": "amazon-braket-pytorch-jobs",
    "tensorflow": "amazon-braket-tensorflow-jobs",
    "cudaq": "amazon-braket-cudaq-jobs",
}
# Braket's job images moved from Python 3.10 to 3.12 in January 2026 (amazon-braket-containers #428).
IMAGE_PYTHON = "3.12"
IMAGE_REGIONS = ("us-east-1", "us-west-1", "us-west-2", "eu-west-2", "eu-north-1")


def image_uri(framework: str, region: str) -> str:
    """The URI of one of Braket's job images ("base", "pytorch", "tensorflow", "cudaq") in a region."""
    if framework not in IMAGE_REPOSITORIES:
        raise ValueError(
            f"Unknown job image {framework!r}: use one of {sorted(IMAGE_REPOSITORIES)} or a full image URI.")
    if region not in IMAGE_REGIONS:
        raise ValueError(f"Braket job images are not in {region!r}; they are in {', '.join(IMAGE_REGIONS)}.")
    return f"{IMAGE_ACCOUNT}.dkr.ecr.{region}.amazonaws.com/{IMAGE_REPOSITORIES[framework]}:latest"


def job_image(spec: JobSpec, region: str) -> str:
    """The image `spec`'s job runs in: its own URI, or Braket's for its framework (base by
    default), whose Python must be the one that pickled the job's function, if it has one."""
    if spec.image_uri and spec.image_uri not in IMAGE_REPOSITORIES:
        return spec.image_uri  # a custom image is the user's to match
    image = image_uri(spec.image_uri or "base", region)
    if spec.python_version and spec.python_version != IMAGE_PYTHON:
        raise AwsConfigurationError(
            f"This job's function was pickled by Python {spec.python_version}, but Braket's job image "
            f"{image} runs Python {IMAGE_PYTHON}; cloudpickle needs the same version on both sides. Submit from "
            f"Python {IMAGE_PYTHON}, pass image_uri= an image with Python {spec.python_version}, or run "
            "with backend='local'."
        )
    return image
