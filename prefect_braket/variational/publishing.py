"""What a flow run publishes while it iterates, and the thread it goes out on.

`Reporter` decides what goes out and when: every iteration's state as the checkpoint (written as
fast as the store takes it: states that come while a write is under way wait as one, the latest,
so a slow store costs the loop nothing and the checkpoint is never older than one write); a progress update (its
description saying where the loop stands) and a log line at most every 2 seconds; the table
artifact and the summary once, when the run ends. Every publication of a keyed artifact is a new
version, and a flow run's Artifacts tab shows each version as a card of its own: a table
refreshed as the loop goes would pile up cards (a 17-iteration run showed 4, an hour's run would
show hundreds), so the live state goes to the progress artifact, which is updated in place. A run
that fails still publishes its table, of the iterations it finished, and says so in its progress.

`Publisher` sends it, in order, from a thread of its own: on a simulator an iteration takes
about as long as one API call, so the loop hands the calls over instead of waiting for each.
"""

from __future__ import annotations

import contextvars
import functools
import queue
import threading
import time
from typing import Any, Callable

from prefect_braket.orchestration.prefect_api import (
    publish_markdown,
    publish_progress,
    publish_table,
    update_progress,
)
from prefect_braket.variational.checkpoints import save_checkpoint
from prefect_braket.variational.loop import Iteration, LoopState, final_energy
from prefect_braket.variational.optimizers import Optimizer
from prefect_braket.variational.reports import summary_markdown

# A progress update and a log line each cost the server a write, and each is work beside the
# loop's circuits on the same cores. Prefect sends a run's logs to its API every 2 seconds
# (PREFECT_LOGGING_TO_API_BATCH_INTERVAL), so the UI shows log lines no more often than that:
# a progress update and a line every 2 seconds are as live as it gets there, for half the writes.
PROGRESS_INTERVAL_SECONDS = 2.0


class Publisher:
    """Runs checkpoint writes and artifact API calls in order on a thread of their own.

    The thread runs in a copy of the caller's context, so the artifacts belong to the caller's flow
    run and use its API client. The first error stops the publishing; the next `submit` raises it
    (so a failing checkpoint store stops the loop early), and so does `close`. Later jobs still run:
    an artifact call that failed does not cost the checkpoints after it.
    """

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[Callable[[], Any] | None] = queue.SimpleQueue()
        self._error: Exception | None = None
        self._thread = threading.Thread(target=contextvars.copy_context().run, args=(self._work,),
                                        name="variational-publisher", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                job()
            except Exception as error:
                self._error = self._error or error

    def check(self) -> None:
        """Raises the error of an earlier job."""
        if self._error is not None:
            raise self._error

    def take_error(self) -> Exception | None:
        """The error of an earlier job, if any, which `submit` and `close` then no longer raise."""
        error, self._error = self._error, None
        return error

    def submit(self, job: Callable[[], Any]) -> None:
        """Queues `job`; raises the error of an earlier one."""
        self.check()
        self._jobs.put(job)

    def close(self) -> None:
        """Waits for every queued job; raises the first error."""
        self._jobs.put(None)
        self._thread.join()
        self.check()


class ProgressArtifact:
    """A progress artifact created and updated through a `Publisher`.

    Its id is known only once the creation has run on the publisher's thread; updates queued
    behind the creation find it there.
    """

    def __init__(self, publisher: Publisher, key: str, description: str, percent: float) -> None:
        self._publisher = publisher
        self._id: Any = None
        publisher.submit(functools.partial(self._create, percent, key, description))

    def _create(self, percent: float, key: str, description: str) -> None:
        self._id = publish_progress(percent, key, description)

    def update(self, percent: float, description: str) -> None:
        self._publisher.submit(lambda: update_progress(self._id, percent, description))


class Reporter:
    """What one flow run of an experiment shows of its iterations.

    `record` is the loop's callback for each finished iteration, `finish` closes a completed run.
    Used as a context manager: leaving it waits until everything is out and raises the first
    publishing error. A run that failed still sends its queued checkpoints, for the next run to
    resume from, and keeps its own error (a publishing error besides is logged).
    """

    def __init__(self, experiment_id: str, location: str, logger: Any, max_iterations: int,
                 first_iteration: int) -> None:
        self._experiment_id = experiment_id
        self._location = location
        self._logger = logger
        self._max_iterations = max_iterations
        self._state: LoopState | None = None
        self._checkpoint: dict[str, Any] | None = None  # the state waiting to be written, if any
        self._checkpoint_lock = threading.Lock()
        self._finished = False
        self._reported_at = time.monotonic()
        self._publisher = Publisher()
        self._progress = ProgressArtifact(self._publisher, f"{experiment_id}-progress",
                                          f"Iterations of {experiment_id}", self._percent(first_iteration))

    def __enter__(self) -> "Reporter":
        return self

    def __exit__(self, kind: Any, failure: BaseException | None, traceback: Any) -> None:
        if failure is None:
            self._publisher.close()
            return
        # The loop may have failed on a publishing error (a failing checkpoint store): the run's end
        # still goes out, and the error is reported once.
        error = self._publisher.take_error()
        if self._state is not None and self._state.history and not self._finished:
            last = self._state.history[-1].iteration
            self._progress.update(self._percent(last + 1),
                                  f"Failed after iteration {last} of {self._experiment_id}: {type(failure).__name__}. "
                                  "A new run resumes from its checkpoint.")
            self._publish_table(self._state)
        try:
            self._publisher.close()
        except Exception as late:
            error = error or late
        if error is not None and error is not failure:
            self._logger.error("Publishing checkpoints and artifacts failed as well: %r", error)

    def _percent(self, iterations: int) -> float:
        return 100.0 * iterations / self._max_iterations

    def record(self, state: LoopState, step: Iteration) -> None:
        """Checkpoints a finished iteration; shows it when 2 seconds have passed since the last one shown.

        The checkpoint is the state as it is now, taken here: the loop goes on changing `state`."""
        self._state = state
        with self._checkpoint_lock:
            waiting, self._checkpoint = self._checkpoint is not None, state.to_checkpoint()
        if waiting:
            self._publisher.check()  # a failing store stops the loop although no write is queued here
        else:
            self._publisher.submit(self._write_checkpoint)
        if time.monotonic() - self._reported_at >= PROGRESS_INTERVAL_SECONDS:
            self._progress.update(self._percent(step.iteration + 1),
                                  f"Iteration {step.iteration} of {self._experiment_id} "
                                  f"(at most {self._max_iterations}): energy {step.energy:.8f}")
            self._logger.info("Iteration %d: energy %.8f, gradient norm %.3g", step.iteration, step.energy,
                              step.gradient_norm)
            self._reported_at = time.monotonic()

    def _write_checkpoint(self) -> None:
        with self._checkpoint_lock:
            checkpoint, self._checkpoint = self._checkpoint, None
        save_checkpoint(self._location, self._experiment_id, checkpoint)

    def _publish_table(self, state: LoopState) -> None:
        self._publisher.submit(functools.partial(
            publish_table, [h.row() for h in state.history], f"{self._experiment_id}-iterations",
            f"Iterations of {self._experiment_id}"))

    def finish(self, state: LoopState, optimizer: Optimizer, evaluated: int, reference_energy: float | None,
               device: Any, shots: int) -> None:
        """Completes the progress, and publishes the table and the summary (of a run with iterations)."""
        self._finished = True
        if not state.history:
            self._progress.update(100.0, f"{self._experiment_id}: nothing left to run")
            return
        energy, last = final_energy(state, optimizer), state.history[-1].iteration
        self._progress.update(100.0, f"Finished {self._experiment_id} after iteration {last}: energy {energy:.8f}, "
                                     f"converged: {state.converged}")
        self._publish_table(state)
        self._logger.info("Finished after iteration %d: energy %.8f, %d iteration(s) evaluated in this run, "
                          "converged: %s", last, energy, evaluated, state.converged)
        summary = summary_markdown(state, optimizer, self._experiment_id, evaluated, reference_energy, device, shots)
        self._publisher.submit(functools.partial(publish_markdown, summary, f"{self._experiment_id}-summary",
                                                 f"Summary of {self._experiment_id}"))
