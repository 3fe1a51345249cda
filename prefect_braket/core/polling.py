"""Waiting for something remote: pauses that start short, grow to a ceiling, and never keep step.

Jobs and quantum tasks are polled the same way everywhere: the first answers come quickly (a
short job is done in a second), later ones every `max_seconds`, and each pause is jittered so
that many waiting flows do not poll Braket in step.

Example:
    ```python
    backoff = Backoff(max_seconds=5.0)
    while not done():
        time.sleep(backoff.next())
    ```
"""

from __future__ import annotations

import random

FIRST_SECONDS = 0.05
GROWTH = 1.5
JITTER = 0.2


class Backoff:
    """The pauses between polls: `first_seconds`, then 1.5 times longer each time up to
    `max_seconds`, each within ±20% (jitter)."""

    def __init__(self, max_seconds: float, first_seconds: float = FIRST_SECONDS):
        self.max_seconds = max_seconds
        self.first_seconds = min(first_seconds, max_seconds)
        self._delay = self.first_seconds

    def next(self) -> float:
        """The next pause, in seconds."""
        delay, self._delay = self._delay, min(self._delay * GROWTH, self.max_seconds)
        return delay * random.uniform(1 - JITTER, 1 + JITTER)

    def reset(self) -> None:
        """Starts short again (something changed: a replacement job, new work)."""
        self._delay = self.first_seconds
