"""Resuming: a VQE run fails midway (its device lost), and a re-run finishes from its checkpoint.

    python flows/resume_demo.py       # prints {"first_run_evaluated": ..., "second_run_evaluated": ..., ...}

Both runs use one experiment id. The first runs H2's VQE on a local simulator that stops
answering before iteration `fail_at` (`LostDevice`, standing in for a device or a session lost
midway); the second, a plain `vqe_h2` run, finds the checkpoint, and the cached iterations, and
evaluates only the iterations that were left.
"""

import asyncio
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
sys.path.insert(0, str(Path(__file__).parent))

from prefect import flow  # noqa: E402
from prefect.runtime import flow_run  # noqa: E402
from vqe_h2 import solve_h2, vqe_h2  # noqa: E402

from prefect_braket import BraketDevice  # noqa: E402
from prefect_braket.variational.checkpoints import load_checkpoint  # noqa: E402


class DeviceLost(RuntimeError):
    """The device stopped answering (a `LostDevice`, on purpose). Not transient: nothing retries it."""


class LostDevice:
    """A device that runs `batches` batches, then raises `DeviceLost` for every batch after.

    Each iteration of the loop sends its circuits in one batch, so a run on this device fails at
    iteration `batches`, counted from the first iteration it evaluates: an iteration answered from
    the cache sends no batch (a fresh experiment id has none).
    """

    def __init__(self, device: BraketDevice, batches: int) -> None:
        self._device = device
        self._batches_left = batches

    @property
    def device_arn(self) -> str:
        """The wrapped device's: the iterations' cache keys name it, so the re-run on the plain device finds them."""
        return self._device.device_arn

    def run_batch(self, programs: Sequence[Any], **options: Any) -> list:
        if self._batches_left == 0:
            raise DeviceLost(f"{self.device_arn} stopped answering.")
        self._batches_left -= 1
        return self._device.run_batch(programs, **options)


@flow(name="vqe-h2-interrupted")
async def interrupted_vqe_h2(fail_at: int, experiment_id: str, checkpoint_location: str,
                             optimizer: str = "gradient-descent") -> dict:
    """`vqe_h2`'s run on a local simulator lost before iteration `fail_at`: fails with `DeviceLost`."""
    return solve_h2(LostDevice(BraketDevice(), fail_at), experiment_id, optimizer=optimizer,
                    checkpoint_location=checkpoint_location)


@flow(name="resume-demo")
async def resume_demo(fail_at: int = 5, experiment_id: str | None = None,
                      checkpoint_location: str | None = None) -> dict:
    """Runs VQE until its device is lost, then again to the end; counts what each run evaluated.

    Without an experiment id, each demo run is an experiment of its own: one whose iterations
    were cached by an earlier demo would lose its device later than `fail_at`.

    Args:
        fail_at: The iteration before which the first run loses its device.
        experiment_id: Names the checkpoint both runs share; a new one per demo by default.
        checkpoint_location: A directory or s3:// prefix; a new temporary directory by default.
    """
    experiment_id = experiment_id or f"resume-demo-{str(flow_run.id)[:8]}"
    location = checkpoint_location or tempfile.mkdtemp(prefix="resume-demo-")
    first = await interrupted_vqe_h2(fail_at, experiment_id, location, return_state=True)
    try:
        await first.aresult()
        raise AssertionError("the first run was meant to fail")
    except DeviceLost:
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
    print(json.dumps(asyncio.run(resume_demo())))
