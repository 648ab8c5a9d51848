"""Per-user limits on what a user holds and starts: active jobs, stored bytes, job creations.

| limit                      | counted in | answer                                           |
|----------------------------|------------|--------------------------------------------------|
| JOB_CREATIONS_PER_MINUTE   | Redis      | 429 RATE_LIMITED + Retry-After (fails open)      |
| MAX_ACTIVE_JOBS_PER_USER   | MongoDB    | 429 TOO_MANY_ACTIVE_JOBS + Retry-After           |
| STORAGE_QUOTA_MB           | MongoDB    | 413 STORAGE_QUOTA_EXCEEDED                       |

Each is keyed by the verified user and shared by every API process. An upload is checked before
it stores anything (no room left: refused before its body is read), capped while it streams (at
the room left), and checked again once stored, for uploads racing in other processes.

A count and the write it guards are two operations, so two processes can both see room for one
more. Callers therefore check before they write and again after: whoever finds the limit passed
once its own write is visible undoes that write. Of two racing writers at least one sees both
writes, so the limit is never passed for good (at worst both undo, and a retry succeeds).
"""

from __future__ import annotations

from service.domain.errors import PayloadTooLarge, StorageQuotaExceeded, TooManyActiveJobs
from service.limits.rate_limit import RateLimiter
from service.settings import Settings
from service.store.database import Store
from service.store.files import StoredFile

# Jobs finish at their own pace: a client refused for too many active jobs polls again this late.
ACTIVE_RETRY_AFTER_S = 30


async def admit_job_creation(limiter: RateLimiter, settings: Settings, user_id: str) -> None:
    """Count one job creation in the caller's 60 s window; ``RateLimited`` (429) past it."""
    await limiter.hit(f"create_job:{user_id}", settings.job_creations_per_minute, "job creations")


async def ensure_active_slot(
    store: Store, settings: Settings, user_id: str, *, created: bool = False
) -> None:
    """``TooManyActiveJobs`` (429) when the user has ``MAX_ACTIVE_JOBS_PER_USER`` active jobs
    (before creating one), or more (``created``: the caller's new job is among them)."""
    limit = settings.max_active_jobs_per_user
    allowed = limit + 1 if created else limit
    if await store.jobs.count_active(user_id, allowed) >= allowed:
        raise TooManyActiveJobs(limit, ACTIVE_RETRY_AFTER_S)


async def upload_limit(store: Store, settings: Settings, user_id: str) -> int:
    """The most bytes this upload may have: ``MAX_UPLOAD_MB`` or the room left in the quota,
    whichever is less; ``StorageQuotaExceeded`` (413) when no room is left."""
    used = await store.usage.stored_bytes(user_id)
    if used >= settings.storage_quota_bytes:
        raise StorageQuotaExceeded(used, settings.storage_quota_bytes)
    return min(settings.max_upload_bytes, settings.storage_quota_bytes - used)


async def quota_error(
    store: Store, settings: Settings, user_id: str, limit: int, exc: PayloadTooLarge
) -> PayloadTooLarge:
    """What to answer for an upload stopped at ``limit`` bytes: the quota's 413 when the quota,
    not ``MAX_UPLOAD_MB``, set the limit."""
    if limit >= settings.max_upload_bytes or isinstance(exc, StorageQuotaExceeded):
        return exc
    used = await store.usage.stored_bytes(user_id)
    return StorageQuotaExceeded(used, settings.storage_quota_bytes)


async def keep_within_quota(store: Store, settings: Settings, stored: StoredFile) -> None:
    """After an upload is stored: if uploads racing in other processes took the user past the
    quota, this one is deleted again and ``StorageQuotaExceeded`` (413) raised."""
    quota = settings.storage_quota_bytes
    used = await store.usage.stored_bytes(stored.user_id)
    if used > quota:
        await store.files.delete(stored.file_id)
        raise StorageQuotaExceeded(used - stored.size_bytes, quota)
