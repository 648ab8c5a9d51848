"""One job's pages, from the render pool to storage: images to the page store, then text and
image keys to ``chapter_pages``, in batches, with progress.

A page counts as processed ("Processed i/n pages...") once its text and its images are all
stored, so every page a client is shown can be opened at once. Pages arrive from the pool in
any order; their images are stored concurrently (``PUTS_IN_FLIGHT``) while the pool renders the
next ones, and one page's pixels never stay in this process longer than its upload.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from service.domain.errors import StorageQuotaExceeded
from service.domain.lifecycle import PAGE_ERROR_CHARS
from service.domain.page_keys import page_key, thumbnail_key
from service.settings import Settings
from service.store.chapters import StoredPage
from service.store.page_images.metered import MeteredPageStore
from worker import metrics
from worker.rendering.page import RenderedPage, RenderOptions
from worker.rendering.pool import RenderPool
from worker.run.patience import Patience
from worker.run.room import over_quota

# Chunks are written in batches: at most this many pages, or what was stored within this long.
BATCH_PAGES = 64
BATCH_SECONDS = 0.05
PUTS_IN_FLIGHT = 8  # image uploads at once per job
# How long a run that stops (lease lost, time limit, shutdown) waits for its uploads in flight.
SETTLE_S = 5.0
# A page document keeps its first warnings and a count of the rest: what a reader of one page
# needs, and 1,600 pages warning 60 times each stay kilobytes, not 20 MB.
CHUNK_WARNINGS = 10
_MORE = re.compile(r"\.\.\. and (\d+) more warnings")

Doc = dict[str, Any]


def render_options(settings: Settings, *, images: bool) -> RenderOptions:
    """How this worker renders pages (``CHAPTER_DPI``, ``PAGE_IMAGE_*``, ``PAGE_MAX_PIXELS``)
    and reads scanned ones (``OCR*``)."""
    return RenderOptions(
        dpi=settings.chapter_dpi,
        image_format=settings.page_image_format,
        quality=settings.page_image_quality,
        max_pixels=settings.page_max_pixels,
        render_images=images,
        ocr=settings.ocr,
        ocr_languages=settings.ocr_languages,
        ocr_tessdata=settings.ocr_tessdata,
        ocr_dpi=settings.ocr_dpi,
        ocr_time_limit_s=settings.ocr_time_limit_s,
    )


async def store_page(
    store: MeteredPageStore,
    chapter_id: str,
    page: RenderedPage,
    options: RenderOptions,
    patience: Patience,
    owner: str,
) -> StoredPage:
    """Put a rendered page's image and thumbnail, taken together from ``owner``'s quota
    (idempotent: a retried page overwrites its own keys, and holds their new size); what its
    page document records. ``STORAGE_QUOTA_EXCEEDED`` when they do not fit: nothing of them is
    kept."""
    number = page.index + 1
    puts: list[tuple[str, bytes, str]] = []
    refs: dict[str, Doc] = {}
    for kind, image in (("image", page.image), ("thumbnail", page.thumbnail)):
        if image is None:
            continue
        make_key = page_key if kind == "image" else thumbnail_key
        key = make_key(chapter_id, number, options.image_format)
        puts.append((key, image.data, image.media_type))
        refs[kind] = {"key": key, "width": image.width, "height": image.height}
    if puts:
        # An outage of the store is waited out, not fatal (a put overwrites its own key); on
        # the run's patience, so that a time limit spent waiting hands the job back instead.
        try:
            await patience.call(lambda: store.put_many(puts, owner=owner), "store a page image")
        except StorageQuotaExceeded as exc:
            raise over_quota(exc) from None
    return StoredPage(
        index=page.index,
        text=page.text,
        has_text=page.has_text,
        image=refs.get("image"),
        thumbnail=refs.get("thumbnail"),
        warnings=kept_warnings(page.warnings),
        text_source=page.text_source,
        ocr_confidence=page.ocr_confidence,
        rotation=page.rotation,
        words=page.words,
        words_width=page.words_width,
        words_height=page.words_height,
        error=page.error,
        links=tuple((k.x0, k.y0, k.x1, k.y1, k.page, k.uri) for k in page.links),
    )


def warning_count(warnings: tuple[str, ...]) -> int:
    """How many warnings a page raised: the render process keeps the first ``MAX_WARNINGS`` and
    sums up the others in a last line (``... and N more warnings``)."""
    if warnings and (more := _MORE.fullmatch(warnings[-1])):
        return len(warnings) - 1 + int(more.group(1))
    return len(warnings)


def kept_warnings(warnings: tuple[str, ...]) -> tuple[str, ...]:
    """What a page document keeps of its warnings: the first ``CHUNK_WARNINGS`` and a count of
    the rest, so that a PDF warning on every glyph does not store megabytes of them."""
    total = warning_count(warnings)
    if total <= CHUNK_WARNINGS:
        return warnings
    return (*warnings[:CHUNK_WARNINGS], f"... and {total - CHUNK_WARNINGS} more warnings")


def page_problem(page: RenderedPage) -> Doc | None:
    """What the job records of a page MuPDF could not read or warned about (a damaged page often
    says "error" nowhere), or None: its error, else as many of its warnings as fit the job's
    short text (``PAGE_ERROR_CHARS``) with how many there were, if not all fit."""
    return problem_of(page.index, page.error, page.warnings)


def problem_of(index: int, error: str | None, warnings: tuple[str, ...]) -> Doc | None:
    """``page_problem`` of the page at ``index`` with ``error`` and ``warnings``: a page just
    rendered, or one a resumed run keeps (its document holds ``kept_warnings``, whose count
    line ``warning_count`` reads)."""
    if error is None and not warnings:
        return None
    total = warning_count(warnings)
    return {
        "page_number": index + 1,
        "error": error if error is not None else _summary(warnings, total),
        "warnings": total,
    }


def _summary(warnings: tuple[str, ...], total: int) -> str:
    """``first; second; ... (N warnings)``, within ``PAGE_ERROR_CHARS``."""
    suffix = f" ({total} warnings)"
    shown: list[str] = []
    for warning in warnings:
        if _MORE.fullmatch(warning) or len("; ".join([*shown, warning])) > PAGE_ERROR_CHARS:
            break
        shown.append(warning)
    if len(shown) == total:
        return "; ".join(shown)
    if not shown:  # the first alone is too long: as much of it as fits
        return warnings[0][: PAGE_ERROR_CHARS - len(suffix)] + suffix
    while len("; ".join(shown)) + len(suffix) > PAGE_ERROR_CHARS and len(shown) > 1:
        shown.pop()
    return ("; ".join(shown))[: PAGE_ERROR_CHARS - len(suffix)] + suffix


async def process_pages(
    pool: RenderPool,
    store: MeteredPageStore,
    path: str,
    indices: Sequence[int],
    chapter_id: str,
    options: RenderOptions,
    on_stored: Callable[[list[StoredPage], list[Doc]], Awaitable[None]],
    patience: Patience,
    owner: str,
) -> None:
    """Render the pages at ``indices`` (a resumed run: those not stored yet) and store them, as
    ``owner``'s; ``on_stored`` gets each batch of stored pages (and their problems) to write and
    report; puts wait out a store outage on ``patience`` (the run's). An exception from it (the
    lease lost, a failed write) stops the rendering; the uploads in flight end before this
    returns."""
    slots = asyncio.Semaphore(PUTS_IN_FLIGHT)
    in_flight: set[asyncio.Task[tuple[StoredPage, Doc | None]]] = set()
    done: list[tuple[StoredPage, Doc | None]] = []
    last_flush = time.monotonic()

    async def upload(page: RenderedPage) -> tuple[StoredPage, Doc | None]:
        try:
            stored = await store_page(store, chapter_id, page, options, patience, owner)
            return stored, page_problem(page)
        finally:
            slots.release()

    async def flush() -> None:
        nonlocal last_flush
        batch = sorted(done, key=lambda item: item[0].index)
        done.clear()
        last_flush = time.monotonic()
        await on_stored([page for page, _ in batch], [p for _, p in batch if p is not None])

    async def collect(block: bool) -> None:
        if not in_flight:
            return
        finished, _ = await asyncio.wait(
            in_flight, timeout=None if block else 0, return_when=asyncio.FIRST_COMPLETED
        )
        for task in finished:
            in_flight.discard(task)
            done.append(task.result())  # an upload that failed raises here

    try:
        async with contextlib.aclosing(pool.render(path, indices, options, owner)) as pages:
            async for page in pages:
                metrics.RENDERED.inc()
                await slots.acquire()  # back-pressure: at most PUTS_IN_FLIGHT pages held
                in_flight.add(asyncio.create_task(upload(page)))
                await collect(block=False)
                if len(done) >= BATCH_PAGES or (
                    done and time.monotonic() - last_flush >= BATCH_SECONDS
                ):
                    await flush()
        while in_flight:
            await collect(block=True)
            if len(done) >= BATCH_PAGES:
                await flush()
        if done:
            await flush()
    finally:
        await _settle(in_flight)


async def _settle(uploads: set[asyncio.Task[Any]]) -> None:
    """Let the uploads in flight end before the run goes on, and perhaps discards the chapter's
    images. A PUT abandoned after its body was sent may still be committed by the store after
    the discard has listed the chapter, leaving an image nobody deletes; so uploads are waited
    for, and cancelled only after ``SETTLE_S`` (the store is then unreachable, and so is any
    delete) or when the run is cancelled again while it waits."""
    if not uploads:
        return
    try:
        await asyncio.wait(uploads, timeout=SETTLE_S)
    finally:
        for task in uploads:
            task.cancel()
        await asyncio.gather(*uploads, return_exceptions=True)
