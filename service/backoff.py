"""The one backoff policy: how long to wait before trying a dependency again.

Every loop that waits out a failure uses it: a run's patience with MongoDB
(``worker/run/patience.py``), a run's heartbeat (``worker/run/heartbeat.py``), the worker's wait
for Redis (``worker/consumer.py``), a process's wait for MongoDB at start-up
(``service/store/mongo.py``, ``worker/wiring.py``), a GridFS page write that lost a race
(``service/store/page_images/gridfs_store.py``) and ``make run`` restarting a crashed child
(``devstack/supervisor.py``).

    Backoff(first_s=0.1, max_s=2.0)      0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0, ...

Delays double from ``first_s`` up to ``max_s``; ``jitter`` (a fraction) spreads many waiters
apart so that they do not all come back in the same instant. Waiting goes through ``pause``,
which tests can make instant (``instant()``): code under test keeps its real loop and its real
policy, only the clock's waiting is removed.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

# Multiplies every pause; 0 in tests that ask for ``instant()``.
_scale = 1.0


@dataclass(frozen=True, slots=True)
class Backoff:
    """A doubling delay between ``first_s`` and ``max_s``, with optional jitter."""

    first_s: float = 0.1
    max_s: float = 2.0
    factor: float = 2.0
    jitter: float = 0.0  # each delay is drawn from [d * (1 - jitter), d]; 1: "full jitter"

    def __post_init__(self) -> None:
        if self.first_s <= 0 or self.max_s < self.first_s or self.factor < 1:
            raise ValueError("a backoff needs 0 < first_s <= max_s and factor >= 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter is a fraction in [0, 1]")

    def after(self, delay: float | None) -> float:
        """The delay that follows ``delay`` (None: the first one), before jitter."""
        if delay is None:
            return self.first_s
        return min(delay * self.factor, self.max_s)

    def delays(self) -> Iterator[float]:
        """The delays of consecutive attempts, jitter applied: an endless iterator."""
        delay: float | None = None
        while True:
            delay = self.after(delay)
            yield self.spread(delay)

    def spread(self, delay: float) -> float:
        """``delay`` with this policy's jitter applied."""
        if not self.jitter:
            return delay
        # Not security: only spreads retries apart in time.
        return delay * (1 - self.jitter * random.random())  # noqa: S311


async def pause(seconds: float) -> None:
    """Wait ``seconds`` (scaled to nothing under ``instant()``), yielding to the loop either way."""
    await asyncio.sleep(seconds * _scale)


@contextmanager
def instant() -> Iterator[None]:
    """For tests: every ``pause`` returns at once (the loop still turns)."""
    global _scale
    previous, _scale = _scale, 0.0
    try:
        yield
    finally:
        _scale = previous
