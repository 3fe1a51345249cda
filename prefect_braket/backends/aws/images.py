"""The container images Braket runs jobs in, and the one question they raise: the Python version.

A job names one of Braket's images by framework ("base", "pytorch", "tensorflow", "cudaq"), or
gives an image URI of its own. A decorated function travels pickled, and cloudpickle needs the
same Python on both sides. The image's Python is read as Braket's SDK reads it
(`AwsSession.get_full_image_tag`): ECR's BatchGetImage for the image's tag (`latest`), then for
its digest, among whose tags one names the Python (`1.0-cpu-py312-ubuntu24.04`). A job pickled by
another Python is refused before anything is uploaded. When ECR cannot be read (no permission,
no network, an emulator without Braket's images) the version Braket documents for its images
(`DEFAULT_IMAGE_PYTHON`) is assumed, with a warning. A custom image is the user's to match.
"""

from __future__ import annotations

import re
import warnings
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

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
DEFAULT_IMAGE_PYTHON = "3.12"
IMAGE_REGIONS = ("us-east-1", "us-west-1", "us-west-2", "eu-west-2", "eu-north-1")
PYTHON_TAG = re.compile(r"-py(\d)(\d+)-")  # Braket's full tags: 1.0-cpu-py312-ubuntu24.04


def image_uri(framework: str, region: str) -> str:
    """The URI of one of Braket's job images ("base", "pytorch", "tensorflow", "cudaq") in a region."""
    if framework not in IMAGE_REPOSITORIES:
        raise ValueError(
            f"Unknown job image {framework!r}: use one of {sorted(IMAGE_REPOSITORIES)} or a full image URI.")
    if region not in IMAGE_REGIONS:
        raise ValueError(f"Braket job images are not in {region!r}; they are in {', '.join(IMAGE_REGIONS)}.")
    return f"{IMAGE_ACCOUNT}.dkr.ecr.{region}.amazonaws.com/{IMAGE_REPOSITORIES[framework]}:latest"


def image_python_tag(ecr: Any, image: str) -> str:
    """The tag of `image` (one of Braket's) that names its Python, read from ECR as Braket's SDK
    reads it: the image by its tag, then every tag of its digest. Raises LookupError if ECR has
    no such image, or none of its tags names a Python."""
    registry = image.split(".", 1)[0]
    repository, tag = image.rsplit("/", 1)[1].split(":", 1)
    found = ecr.batch_get_image(registryId=registry, repositoryName=repository, imageIds=[{"imageTag": tag}])
    if not found["images"]:
        raise LookupError(f"ECR has no image {image}")
    digest = found["images"][0]["imageId"]["imageDigest"]
    same = ecr.batch_get_image(registryId=registry, repositoryName=repository, imageIds=[{"imageDigest": digest}])
    tags = [entry["imageId"].get("imageTag", "") for entry in same["images"]]
    for full_tag in tags:
        if PYTHON_TAG.search(full_tag):
            return full_tag
    raise LookupError(f"none of the tags of {image} ({', '.join(tags) or 'none'}) names a Python version")


def image_python(ecr: Any, image: str) -> tuple[str, str]:
    """The Python version of one of Braket's images ("3.12") and where that was learnt: its tag in
    ECR, or Braket's documented default, with a warning, when ECR cannot tell."""
    try:
        tag = image_python_tag(ecr, image)
    except (ClientError, BotoCoreError, LookupError) as error:
        warnings.warn(
            f"The Python version of Braket's job image {image} could not be read from ECR ({error}); assuming "
            f"Python {DEFAULT_IMAGE_PYTHON}, the version Braket documents for its images.",
            stacklevel=2,
        )
        return DEFAULT_IMAGE_PYTHON, "Braket's documented default, as ECR could not be read"
    major, minor = PYTHON_TAG.search(tag).groups()  # type: ignore[union-attr]  # the tag was matched above
    return f"{major}.{minor}", f"its tag {tag} in ECR"


def job_image(spec: JobSpec, region: str, ecr: Any) -> str:
    """The image `spec`'s job runs in: its own URI, or Braket's for its framework (base by
    default), whose Python (read from ECR, `ecr` being a client in `region`) must be the one that
    pickled the job's function, if it has one."""
    if spec.image_uri and spec.image_uri not in IMAGE_REPOSITORIES:
        return spec.image_uri  # a custom image is the user's to match
    image = image_uri(spec.image_uri or "base", region)
    if not spec.python_version:
        return image
    python, source = image_python(ecr, image)
    if spec.python_version != python:
        raise AwsConfigurationError(
            f"This job's function was pickled by Python {spec.python_version}, but Braket's job image {image} "
            f"runs Python {python} ({source}); cloudpickle needs the same version on both sides. Submit from "
            f"Python {python}, pass image_uri= an image with Python {spec.python_version}, or run with "
            "backend='local' (the embedded engine runs jobs in the Python that submits them)."
        )
    return image
