"""Resuming: a VQE run fails midway (injected), and a re-run finishes from its checkpoint.

    python flows/resume_demo.py       # prints {"first_run_evaluated": ..., "second_run_evaluated": ..., ...}

Both runs use one experiment id. The first stops before iteration `fail_at`; the second finds
the checkpoint, and the cached iterations, and evaluates only the iterations that were left.
"""

import asyncio
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
sys.path.insert(0, str(Path(__file__).parent))

from prefect import flow  # noqa: E402
from vqe_h2 import vqe_h2  # noqa: E402

from prefect_braket.variational import InjectedFailure, load_checkpoint  # noqa: E402


@flow(name="resume-demo")
async def resume_demo(fail_at: int = 5, experiment_id: str = "resume-demo",
                      checkpoint_location: str | None = None) -> dict:
    """Runs VQE until an injected failure, then again to the end; counts what each run evaluated."""
    location = checkpoint_location or tempfile.mkdtemp(prefix="resume-demo-")
    first = await vqe_h2(experiment_id=experiment_id, checkpoint_location=location, fail_at_iteration=fail_at,
                         return_state=True)
    try:
        await first.aresult()
        raise AssertionError("the first run was meant to fail")
    except InjectedFailure:
        pass
    first_evaluated = len(load_checkpoint(location, experiment_id)["history"])
    second = await vqe_h2(experiment_id=experiment_id, checkpoint_location=location)
    return {
        "first_run_evaluated": first_evaluated,
        "second_run_evaluated": second["evaluated_iterations"],
        "total_iterations": second["iterations"],
        "energy": second["energy"],
        "exact_energy": second["exact_energy"],
        "checkpoint": str(Path(location) / f"{experiment_id}.json"),
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(resume_demo(experiment_id=f"resume-demo-{os.getpid()}"))))
