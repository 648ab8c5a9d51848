"""At most ``MAX_CONCURRENT_UPLOADS_PER_USER`` uploads per user at once, across API processes.

Each upload in flight holds a lease: a member of the Redis sorted set ``uploads:<user_id>``
whose score is the moment it expires, on Redis's own clock. Taking a slot drops expired leases,
counts the rest and adds one only under the limit, in one script, so two processes cannot both
take the last slot. The upload renews its lease every ``LEASE_S / 3`` while it runs and removes
it when it ends; a process that dies mid-upload stops renewing, and its slot frees itself
within ``LEASE_S``. A plain counter with a TTL would instead stay high after such a crash for as
long as the user kept uploading.

When Redis fails the limit is not enforced and a line is logged (``fail_open.py``): the upload
itself needs only MongoDB, and a Redis outage must not stop uploads.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

from redis.asyncio import Redis

from service.domain.errors import TooManyUploads
from service.limits.fail_open import FailOpen

LEASE_S = 30.0  # a slot of a process that died is free again after this long
TIMEOUT_S = 1.0  # how long taking a slot may delay an upload before the limit is waived
RETRY_AFTER_S = 5

# KEYS[1] the user's leases; ARGV limit, lease in ms, this upload's token. Returns 1 if taken.
TAKE = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""

# KEYS[1] the user's leases; ARGV lease in ms, the token. Pushes the token's expiry out.
RENEW = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
if redis.call('ZADD', KEYS[1], 'XX', 'CH', now + tonumber(ARGV[1]), ARGV[2]) == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return 1
"""


def key_of(user_id: str) -> str:
    """The Redis key holding ``user_id``'s upload leases."""
    return f"uploads:{user_id}"


async def _renew(redis: Redis, key: str, token: str, lease_ms: int, guard: FailOpen) -> None:
    renew = redis.register_script(RENEW)
    while True:
        await asyncio.sleep(LEASE_S / 3)
        await guard.call(
            lambda: renew(keys=[key], args=[lease_ms, token]), f"upload slot {key} not renewed"
        )


@contextlib.asynccontextmanager
async def upload_slot(redis: Redis, user_id: str, limit: int) -> AsyncIterator[None]:
    """Hold one of ``user_id``'s ``limit`` upload slots for the block; 429 when all are taken."""
    key, token, lease_ms = key_of(user_id), uuid.uuid4().hex, int(LEASE_S * 1000)
    guard = FailOpen(timeout_s=TIMEOUT_S)
    take = redis.register_script(TAKE)
    taken = await guard.call(
        lambda: take(keys=[key], args=[limit, lease_ms, token]),
        f"upload concurrency not limited for {key}",
    )
    if taken is None:
        yield
        return
    if not taken:
        raise TooManyUploads(limit, RETRY_AFTER_S)
    renewal = asyncio.create_task(_renew(redis, key, token, lease_ms, guard))
    try:
        yield
    finally:
        # Not awaited: a renewal racing the removal below cannot bring the lease back (XX).
        # A release that fails leaves the lease to expire by itself within LEASE_S.
        renewal.cancel()
        await guard.call(lambda: redis.zrem(key, token), f"upload slot {key} not released")
