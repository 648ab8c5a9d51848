"""What this worker knows of MongoDB and Redis being up: for its logs, its metrics, its sweeper.

Every part of the worker that talks to a dependency reports here: ``up()`` after a success,
``down(exc)`` after a transient failure. The first failure logs one error line and sets
``pcj_worker_dependency_up{dependency=...}`` to 0; the first success after it logs how long the
outage lasted and sets it back to 1. Nothing else changes state, so a failing retry loop does not
flood the log.

The sweeper asks ``up_for_s()``: a worker cut off from MongoDB could not beat, so heartbeats are
judged only once MongoDB has been reachable for longer than ``STALE_AFTER_S``, and an outage
never counts as a lost worker.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

from worker import metrics

log = logging.getLogger("worker.dependency")


class Dependency:
    """One dependency's state as this process has seen it."""

    def __init__(self, name: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.clock = clock
        self.down_since: float | None = None
        self.up_since = -math.inf  # no outage seen yet: up "forever"
        metrics.DEPENDENCY_UP.labels(dependency=name).set(1)

    @property
    def is_up(self) -> bool:
        return self.down_since is None

    def up(self) -> None:
        """A call to the dependency just succeeded."""
        if self.down_since is None:
            return
        now = self.clock()
        log.warning("%s is back after %.1f s", self.name, now - self.down_since)
        self.down_since = None
        self.up_since = now
        metrics.DEPENDENCY_UP.labels(dependency=self.name).set(1)

    def down(self, exc: BaseException) -> None:
        """A call to the dependency just failed with a transient error."""
        if self.down_since is not None:
            return
        self.down_since = self.clock()
        log.error(
            "%s unreachable (%s: %s); running jobs wait, the worker keeps going",
            self.name, type(exc).__name__, _first_line(exc),
        )  # fmt: skip
        metrics.DEPENDENCY_UP.labels(dependency=self.name).set(0)
        metrics.OUTAGES.labels(dependency=self.name).inc()

    def up_for_s(self) -> float:
        """Seconds since the last outage ended (infinite if none was seen); 0 while down."""
        if self.down_since is not None:
            return 0.0
        return self.clock() - self.up_since


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else ""


MONGODB = Dependency("mongodb")
REDIS = Dependency("redis")
