"""A sliding-window rate limit counted in Redis, atomic across API processes.

One Lua script per request: drop the window's expired hits, count, and record this hit only if
it is under the limit, all on Redis's own clock. Litestar's ``RateLimitMiddleware`` was the first
choice, but it reads the history and writes it back in two round trips (two processes can both
read 99 and both let the 100th request through) and it picks its key before authentication, so
it cannot count per verified user as seed 004 asks (``list_chunks:<user_id>``).

When Redis is unreachable the limit is not enforced (logged): listing chunks is a read of data
the caller owns, and an outage of the doorbell must not take reads down with it.
"""

from __future__ import annotations

import logging
import math
import uuid
from dataclasses import dataclass

from redis.asyncio import Redis

from service.errors import REDIS_DOWN, ServiceError

log = logging.getLogger("service.rate_limit")

WINDOW_S = 60

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

    def __init__(self, quota: Quota) -> None:
        super().__init__(
            f"Rate limit exceeded: {quota.limit} requests per {WINDOW_S} seconds",
            headers={**quota.headers(), "Retry-After": str(max(quota.reset_s, 1))},
        )


async def hit(redis: Redis, key: str, limit: int) -> Quota | None:
    """Count one request under ``key``; raise ``RateLimited`` past ``limit`` a minute.

    None when Redis is unreachable (the request goes on, unlimited).
    """
    try:
        allowed, count, reset_ms = await redis.eval(  # type: ignore[misc]
            SLIDING_WINDOW, 1, key, str(limit), str(WINDOW_S * 1000), uuid.uuid4().hex
        )
    except REDIS_DOWN as exc:
        log.warning("rate limit not enforced: Redis unreachable (%s)", exc)
        return None
    remaining = max(limit - int(count), 0)
    quota = Quota(limit=limit, remaining=remaining, reset_s=math.ceil(reset_ms / 1000))
    if not allowed:
        raise RateLimited(quota)
    return quota
