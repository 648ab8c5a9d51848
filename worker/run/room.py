"""Room in its owner's storage quota for a job, checked before it renders anything.

Every byte a job stores is taken from its owner's quota as it is written
(``service/store/usage.py``): a job that would pass ``STORAGE_QUOTA_MB`` fails
``STORAGE_QUOTA_EXCEEDED`` at the page that does not fit, and what it stored is given back. This
check comes first, so that a job that cannot fit fails before it spends minutes rendering: its
pages' pixels are read from the PDF's page boxes (``worker/rendering/estimate.py``) and priced
at ``BYTES_PER_PIXEL``; a ``pdf_file`` job stores a copy of its PDF, whose size is known.
"""

from __future__ import annotations

import asyncio
import os

from service.domain.errors import ExtractionError, StorageQuotaExceeded
from service.domain.page_keys import chapter_prefix
from service.settings import Settings
from service.store.database import Store
from worker.rendering.page import RenderOptions
from worker.rendering.pool import RenderPool

# What a page image and its thumbnail take per pixel at the least: WebP quality 85, method 2, at
# 150 DPI, a page of a few lines of text 0.016 bytes a pixel, a vector drawing 0.019, a scan
# 0.031, a page of a book 0.052, a page with a figure and a photo 0.062 (measured here). The
# estimate is a floor, so a job refused before rendering is one that would not fit even if
# every page were as light as a few lines of text; what pages really take is counted as they
# are stored.
BYTES_PER_PIXEL = 0.015
MB = 1024 * 1024


def over_quota(exc: StorageQuotaExceeded) -> ExtractionError:
    """A job whose output does not fit its owner's quota fails, keeping nothing."""
    return ExtractionError("STORAGE_QUOTA_EXCEEDED", exc.detail)


async def ensure_room(
    store: Store,
    pool: RenderPool,
    settings: Settings,
    job: dict[str, object],
    path: str,
    options: RenderOptions,
) -> None:
    """``STORAGE_QUOTA_EXCEEDED`` unless the job's estimated output fits its owner's quota
    (what an earlier attempt of the job stored already is not counted twice)."""
    if options.render_images:
        needed = int(await pool.measure(path, options, str(job["user_id"])) * BYTES_PER_PIXEL)
    else:
        needed = await asyncio.to_thread(os.path.getsize, path)  # the chapter: a copy of it
    user_id, chapter_id = str(job["user_id"]), str(job["chapter_id"])
    used = await store.usage.stored_bytes(user_id)
    own = await store.usage.held(chapter_prefix(chapter_id))
    quota = settings.storage_quota_bytes
    if used - own + needed > quota:
        raise ExtractionError(
            "STORAGE_QUOTA_EXCEEDED",
            f"Storage quota exceeded: {(used - own) / MB:.1f} MB of the {quota // MB} MB "
            f"allowed per user (STORAGE_QUOTA_MB) are in use and this chapter needs about "
            f"{needed / MB:.1f} MB more; delete files or chapters to make room",
        )
