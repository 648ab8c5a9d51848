"""Per-user rate limits: the ``limits`` library's moving window in Redis, shared by every API
process.

One hit is one Lua script (``limits``' ``acquire_moving_window``): it reads the window and records
the request only if it is under the limit, atomically, so two processes cannot both let the
100th request through. The key is chosen by the handler after authentication, so it counts per
verified user (``list_chunks:<user_id>``, ``create_job:<user_id>``). A second, read-only script
reads where the caller stands, for the ``RateLimit-*`` headers. Litestar's
``RateLimitMiddleware`` was the first choice, but it reads and writes its history in two round
trips and picks its key before authentication; a hand-written Lua window came next, and gave way
to ``limits`` so that the project keeps one rate limiter it does not maintain itself.

Timestamps are each API process's wall clock (``limits`` sends them), so hosts must keep their
clocks in sync (NTP): a skew of a second shifts a 60 s window by a second.

When Redis fails (unreachable, slower than ``TIMEOUT_S``, read-only after a failover, out of
memory) the limit is not enforced, logged, and Redis is left alone for ``PAUSE_S``
(``service/limits/fail_open.py``): listing chunks is a read of data the caller owns, and an
outage of the doorbell must not take reads or job creation down with it (MongoDB, not Redis,
holds jobs; the per-user cap on active jobs is counted there).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from limits import RateLimitItemPerSecond
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from redis.asyncio import Redis

from service.domain.errors import RateLimited
from service.limits.fail_open import FailOpen

WINDOW_S = 60
TIMEOUT_S = 1.0  # a rate-limit check may delay a request this much, no more (a burst of
# concurrent requests queues on the connection pool: too short a limit would fail open then)
PAUSE_S = 5.0  # after a failure, how long requests go unlimited before Redis is tried again
KEY_PREFIX = "pcj_rate"  # Redis keys: pcj_rate:LIMITER/<key>/<limit>/<window>/second


@dataclass(frozen=True, slots=True)
class Quota:
    """Where a caller stands after one request."""

    limit: int
    remaining: int
    reset_s: int  # until the oldest counted request leaves the window
    window_s: int = WINDOW_S

    def headers(self) -> dict[str, str]:
        return {
            "RateLimit-Policy": f"{self.limit}; w={self.window_s}",
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_s),
        }


def refused(quota: Quota, what: str = "requests") -> RateLimited:
    """The 429 for a caller standing at ``quota``."""
    return RateLimited(quota.limit, quota.window_s, quota.reset_s, what, quota.headers())


class RateLimiter:
    """Per-key request limits of one API process, shared through Redis with all the others."""

    def __init__(
        self,
        redis: Redis,
        *,
        window_s: int = WINDOW_S,
        timeout_s: float = TIMEOUT_S,
        pause_s: float = PAUSE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # The scripts run on the client's own connection pool (the doorbell's): no second pool.
        storage = RedisStorage(
            "async+redis://",
            implementation="redispy",
            key_prefix=KEY_PREFIX,
            connection_pool=redis.connection_pool,  # type: ignore[arg-type]  # passed on as is
        )
        self._strategy = MovingWindowRateLimiter(storage)
        self._window_s = window_s
        self._pause_s = pause_s
        self._counting = FailOpen(timeout_s=timeout_s, pause_s=pause_s, clock=clock)
        self._reading = FailOpen(timeout_s=timeout_s)

    async def hit(self, key: str, limit: int, what: str = "requests") -> Quota | None:
        """Count one request under ``key``; raise ``RateLimited`` past ``limit`` a window.

        None when Redis failed now or moments ago (the request goes on, unlimited). ``what``
        names the requests in the 429's message ("job creations").
        """
        item = RateLimitItemPerSecond(limit, self._window_s)
        allowed = await self._counting.call(
            lambda: self._strategy.hit(item, key),
            f"rate limit not enforced for {self._pause_s:g} s",
        )
        if allowed is None:
            return None
        quota = await self._where(item, key)
        if not allowed:
            # Without the window's figures, the worst case: the whole window to wait.
            raise refused(quota or Quota(limit, 0, self._window_s, self._window_s), what)
        return quota

    async def _where(self, item: RateLimitItemPerSecond, key: str) -> Quota | None:
        """Where ``key`` stands, for the headers: a second, read-only script. The decision is
        made already, so a failure here costs the headers only, never the limit."""
        stats = await self._reading.call(
            lambda: self._strategy.get_window_stats(item, key), "rate limit headers", quiet=True
        )
        if stats is None:
            return None
        # limits gives a wall-clock reset time; the headers want seconds from now.
        reset_s = max(math.ceil(stats.reset_time - time.time()), 0)
        return Quota(item.amount, max(stats.remaining, 0), reset_s, self._window_s)

    async def count(self, key: str, limit: int) -> int:
        """How many requests ``key`` has in its current window (for tests and operators)."""
        item = RateLimitItemPerSecond(limit, self._window_s)
        stats = await self._strategy.get_window_stats(item, key)
        return limit - stats.remaining
