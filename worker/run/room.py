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
from service.domain.page_keys import chapter_prefix, text_key
from service.settings import Settings
from service.store.chapters import StoredPage, text_holdings
from service.store.database import Store
from service.store.page_images.metered import MeteredPageStore
from service.store.usage import Holding
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
# Pages' text is taken from the quota by the megabyte, not batch by batch: a take is a
# transaction (25 ms on a loaded machine), and text pages come in batches of a few dozen every
# 50 ms, so taking each batch doubled the time of a 1,200-page text job (3.3-5.1 s against
# 7.9-11.3 s). A batch is taken before it is written once the text not yet taken would pass
# this; what is written before its take is never more than this, and a job over the quota
# fails and keeps nothing anyway.
TEXT_TAKE_BYTES = 1024 * 1024


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


class TextMeter:
    """A run's pages' text, taken from its owner's quota a megabyte at a time
    (``TEXT_TAKE_BYTES``): ``before_write(batch)`` before each batch of pages is written,
    ``flush()`` once every page is, and ``hold_kept`` for the pages a resumed run keeps.
    ``STORAGE_QUOTA_EXCEEDED`` when the text does not fit."""

    def __init__(
        self,
        images: MeteredPageStore,
        owner: str,
        chapter_id: str,
        threshold: int = TEXT_TAKE_BYTES,
    ) -> None:
        self._images = images
        self._owner = owner
        self._chapter_id = chapter_id
        self._threshold = threshold
        self._pending: list[Holding] = []

    async def before_write(self, batch: list[StoredPage]) -> None:
        self._pending += text_holdings(self._chapter_id, batch)
        if sum(holding.bytes for holding in self._pending) >= self._threshold:
            await self.flush()

    async def hold_kept(self, text_bytes: dict[int, int]) -> None:
        """Take the text of the pages a resumed run keeps (page index: bytes), at once: an
        earlier run may have written them and stopped before it took them. A page it took
        already is held again at the same size, which takes nothing more."""
        self._pending += [
            Holding(text_key(self._chapter_id, index + 1), nbytes, "text")
            for index, nbytes in sorted(text_bytes.items())
        ]
        await self.flush()

    async def flush(self) -> None:
        if not self._pending:
            return
        try:
            await self._images.hold(self._owner, self._pending, "these pages")
        except StorageQuotaExceeded as exc:
            raise over_quota(exc) from None
        self._pending = []
