"""Keep serving while Redis fails: a limit that cannot be counted is not enforced, and logged.

Redis holds counters (rate limits, upload slots), never data: MongoDB holds jobs. So when Redis is
unreachable, slower than ``timeout_s``, read-only after a failover or out of memory, a limit
counted there is waived for the request rather than failing it, and a line is logged. After a
failure Redis is left alone for ``pause_s`` (when set), so that a hung server costs one request
a short wait, not every request. What counts as Redis failing is the service's one answer to
"may waiting fix this?" (``service/store/failure.py``); anything else is a bug and raises.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from service.store.failure import is_transient

log = logging.getLogger("service.fail_open")

T = TypeVar("T")


class FailOpen:
    """Calls to Redis that give way when Redis fails: ``await guard.call(op, what)`` is the
    operation's result, or None when Redis failed now (or moments ago, with ``pause_s``)."""

    def __init__(
        self,
        *,
        timeout_s: float,
        pause_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._timeout_s = timeout_s
        self._pause_s = pause_s
        self._clock = clock
        self._paused_until = float("-inf")

    async def call(
        self, operation: Callable[[], Awaitable[T]], what: str, *, quiet: bool = False
    ) -> T | None:
        """``operation()`` within ``timeout_s``; None (logged unless ``quiet``) when Redis
        failed. ``what`` says what is waived: "<what>: Redis failed (<error>)"."""
        if self._clock() < self._paused_until:
            return None
        try:
            return await asyncio.wait_for(operation(), self._timeout_s)
        except Exception as exc:
            if not is_transient(exc):
                raise
            if self._pause_s:
                self._paused_until = self._clock() + self._pause_s
            if not quiet:
                log.warning("%s: Redis failed (%s)", what, type(exc).__name__)
            return None
