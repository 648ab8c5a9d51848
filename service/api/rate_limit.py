"""A sliding-window rate limit counted in Redis, atomic across API processes.

One Lua script per request: drop the window's expired hits, count, and record this hit only if
it is under the limit, all on Redis's own clock. Litestar's ``RateLimitMiddleware`` was the first
choice, but it reads the history and writes it back in two round trips (two processes can both
read 99 and both let the 100th request through) and it picks its key before authentication, so
it cannot count per verified user as seed 004 asks (``list_chunks:<user_id>``).

When Redis fails (unreachable, slower than ``TIMEOUT_S``, read-only after a failover, out of
memory) the limit is not enforced, logged, and Redis is left alone for ``PAUSE_S`` so a hung
server costs one request a short wait, not every request: listing chunks is a read of data the
caller owns, and an outage of the doorbell must not take reads down with it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError

from service.domain.errors import ServiceError
from service.store.doorbell import REDIS_DOWN

log = logging.getLogger("service.rate_limit")

# Everything that means "Redis did not count this request" (REDIS_DOWN: connection refused,
# reset, socket timeout; RedisError: READONLY, OOM, BUSY, NOSCRIPT races; TimeoutError: slow).
FAILURES: tuple[type[Exception], ...] = (TimeoutError, RedisError, *REDIS_DOWN)

WINDOW_S = 60
TIMEOUT_S = 1.0  # a rate-limit check may delay a request this much, no more (a burst of
# concurrent requests queues on the connection pool: too short a limit would fail open then)
PAUSE_S = 5.0  # after a failure, how long requests go unlimited before Redis is tried again

# KEYS[1] key; ARGV limit, window in ms, a unique member. Returns {allowed, count, reset_ms}.
SLIDING_WINDOW = """
local key = KEYS[1]
local limit = tonumber(ARGV[1])
local window_ms = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window_ms)
local count = redis.call('ZCARD', key)
local allowed = 0
if count < limit then
  redis.call('ZADD', key, now, ARGV[3])
  count = count + 1
  allowed = 1
end
redis.call('PEXPIRE', key, window_ms)
local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
local reset_ms = window_ms
if oldest[2] then
  reset_ms = tonumber(oldest[2]) + window_ms - now
end
return {allowed, count, reset_ms}
"""


@dataclass(frozen=True, slots=True)
class Quota:
    """Where a caller stands after one request."""

    limit: int
    remaining: int
    reset_s: int  # until the oldest counted request leaves the window

    def headers(self) -> dict[str, str]:
        return {
            "RateLimit-Policy": f"{self.limit}; w={WINDOW_S}",
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_s),
        }


class RateLimited(ServiceError):
    status_code = 429
    code = "RATE_LIMITED"

    def __init__(self, quota: Quota) -> None:
        super().__init__(
            f"Rate limit exceeded: {quota.limit} requests per {WINDOW_S} seconds",
            headers={**quota.headers(), "Retry-After": str(max(quota.reset_s, 1))},
        )


class RateLimiter:
    """Per-key request limits of one API process, shared through Redis with all the others."""

    def __init__(
        self,
        redis: Redis,
        *,
        timeout_s: float = TIMEOUT_S,
        pause_s: float = PAUSE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._script = redis.register_script(SLIDING_WINDOW)  # EVALSHA, loaded on first use
        self._timeout_s = timeout_s
        self._pause_s = pause_s
        self._clock = clock
        self._paused_until = float("-inf")

    async def hit(self, key: str, limit: int) -> Quota | None:
        """Count one request under ``key``; raise ``RateLimited`` past ``limit`` a minute.

        None when Redis failed now or moments ago (the request goes on, unlimited).
        """
        if self._clock() < self._paused_until:
            return None
        try:
            allowed, count, reset_ms = await asyncio.wait_for(
                self._script(keys=[key], args=[limit, WINDOW_S * 1000, uuid.uuid4().hex]),
                self._timeout_s,
            )
        except FAILURES as exc:
            self._paused_until = self._clock() + self._pause_s
            log.warning(
                "rate limit not enforced for %.0f s: Redis failed (%s)",
                self._pause_s,
                exc.__class__.__name__,
            )
            return None
        remaining = max(limit - int(count), 0)
        quota = Quota(limit=limit, remaining=remaining, reset_s=math.ceil(reset_ms / 1000))
        if not allowed:
            raise RateLimited(quota)
        return quota
