"""Serves the example flows as deployments (VQE nightly at 02:00 UTC) against the current Prefect API.

    prefect server start                                   # in one terminal (schedules need a real server)
    prefect config set PREFECT_API_URL=http://127.0.0.1:4200/api
    python flows/serve.py                                  # in another; Ctrl-C stops serving
    prefect deployment run 'vqe-h2/vqe-h2-nightly'          # or the Run button in the UI
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from hybrid_job_flow import hybrid_job_flow  # noqa: E402
from prefect import serve  # noqa: E402
from prefect.schedules import Cron  # noqa: E402
from qaoa_maxcut import qaoa_maxcut  # noqa: E402
from resume_demo import resume_demo  # noqa: E402
from sweep import sweep  # noqa: E402
from vqe_h2 import vqe_h2  # noqa: E402


def deployments() -> list:
    """The example flows' deployments, as `serve` runs them."""
    return [
        # A cron without a timezone is read in the server's; prefect.yaml says UTC, and so does this.
        vqe_h2.to_deployment(name="vqe-h2-nightly", schedule=Cron("0 2 * * *", timezone="UTC"), tags=["braket", "vqe"]),
        qaoa_maxcut.to_deployment(name="qaoa-maxcut", tags=["braket", "qaoa"]),
        sweep.to_deployment(name="vqe-sweep", tags=["braket", "sweep"]),
        resume_demo.to_deployment(name="resume-demo", tags=["braket"]),
        hybrid_job_flow.to_deployment(name="hybrid-job", tags=["braket"]),
    ]


if __name__ == "__main__":
    serve(*deployments())
