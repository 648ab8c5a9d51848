"""Per-user limits at the API's edge: job creations a minute, active jobs, stored bytes.

| limit                      | counted in | answer                                           |
|----------------------------|------------|--------------------------------------------------|
| JOB_CREATIONS_PER_MINUTE   | Redis      | 429 RATE_LIMITED + Retry-After (fails open)      |
| MAX_ACTIVE_JOBS_PER_USER   | MongoDB    | 429 TOO_MANY_ACTIVE_JOBS + Retry-After           |
| STORAGE_QUOTA_MB           | MongoDB    | 413 STORAGE_QUOTA_EXCEEDED                       |

Each is keyed by the verified user and shared by every API process. An upload is checked before
it stores anything (no room left: refused before its body is read), capped while it streams (at
the room left), and checked again once stored, for uploads racing in other processes.
"""

from __future__ import annotations

from service.api.state import Services
from service.domain.errors import PayloadTooLarge, StorageQuotaExceeded
from service.store.files import StoredFile, delete_file
from service.store.quota import ensure_active_slot, room_left, used_bytes


async def admit_job_creation(services: Services, user_id: str) -> None:
    """Count one job creation in the caller's 60 s window; ``RateLimited`` (429) past it."""
    await services.limiter.hit(
        f"create_job:{user_id}", services.settings.job_creations_per_minute, "job creations"
    )


async def ensure_job_slot(services: Services, user_id: str) -> None:
    """``TooManyActiveJobs`` (429) now, before an upload that would only become a refused job."""
    await ensure_active_slot(user_id, services.settings.max_active_jobs_per_user)


async def upload_limit(services: Services, user_id: str) -> int:
    """The most bytes this upload may have: ``MAX_UPLOAD_MB`` or the room left in the quota,
    whichever is less; ``StorageQuotaExceeded`` (413) when no room is left."""
    settings = services.settings
    room = await room_left(services.mongo.db, user_id, settings.storage_quota_bytes)
    return min(settings.max_upload_bytes, room)


async def quota_error(
    services: Services, user_id: str, limit: int, exc: PayloadTooLarge
) -> PayloadTooLarge:
    """What to answer for an upload stopped at ``limit`` bytes: the quota's 413 when the quota,
    not ``MAX_UPLOAD_MB``, set the limit."""
    settings = services.settings
    if limit >= settings.max_upload_bytes or isinstance(exc, StorageQuotaExceeded):
        return exc
    used = await used_bytes(services.mongo.db, user_id)
    return StorageQuotaExceeded(used, settings.storage_quota_bytes)


async def keep_within_quota(services: Services, stored: StoredFile) -> None:
    """After an upload is stored: if uploads racing in other processes took the user past the
    quota, this one is deleted again and ``StorageQuotaExceeded`` (413) raised."""
    db, quota = services.mongo.db, services.settings.storage_quota_bytes
    used = await used_bytes(db, stored.user_id)
    if used > quota:
        await delete_file(db, stored.file_id)
        raise StorageQuotaExceeded(used - stored.size_bytes, quota)
