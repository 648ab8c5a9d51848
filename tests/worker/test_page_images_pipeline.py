"""Issue 11 end to end: PDFs generated here go through the real worker (render pool, page store)
and come out as chapters whose every page URL opens as an image, on both page stores (GridFS on
the session's mongod, S3 on the session's SeaweedFS). Every path that ends without a chapter
(cancel, failure, delete) is shown to leave no image behind, by counting what the store holds.
"""

from __future__ import annotations

import asyncio
import io
from typing import Any

import httpx
import pymupdf
from PIL import Image, ImageStat

from devstack.embedded import free_port
from service.domain import lifecycle
from service.domain.job import utcnow
from service.domain.page_keys import chapter_prefix, page_key
from service.settings import Settings
from service.store.collections import Collections
from service.store.database import Store
from service.store.page_images import PageStore, create_page_store
from service.store.page_images.s3_store import S3PageStore
from tests.support.pdfs import (
    cjk_pdf,
    drawing_pdf,
    huge_page_pdf,
    raster_image_pdf,
    rotated_pdf,
    scanned_pdf,
    text_pdf,
    titled,
)
from tests.support.render_hook import abort_at_titled_page
from tests.worker.conftest import Backend
from worker.rendering.pool import RenderPool
from worker.sweeper import sweep

JOBS = "/api/v1/books/jobs"
API_ORIGIN = "http://testserver"  # the test client's: GridFS image URLs point at the API
DPI = 150
# Pages of book_pdf(), in order.
DRAWING, RASTER, ROTATED, CJK, SCANNED, HUGE = range(6)
# For tests that act while a job runs: one render process, so that a machine with many cores
# does not finish 40 pages before the test has seen the job running.
ONE_PROCESS = {"render_processes": 1}


def book_pdf() -> bytes:
    """One PDF of the pages books have: drawing, picture, rotated, CJK, scanned, huge."""
    parts = [drawing_pdf(), raster_image_pdf(), rotated_pdf(), cjk_pdf(), scanned_pdf()]
    doc = pymupdf.open()
    for part in [*parts, huge_page_pdf()]:
        with pymupdf.open(stream=part, filetype="pdf") as source:
            doc.insert_pdf(source)
    data: bytes = doc.tobytes()
    doc.close()
    return data


async def get(backend: Backend, url: str) -> httpx.Response:
    """GET a URL as a browser's ``<img>`` would: no Authorization header."""
    if url.startswith(API_ORIGIN):
        return await backend.api.get(url)
    async with httpx.AsyncClient() as browser:
        return await browser.get(url)


async def open_image(backend: Backend, url: str) -> Image.Image:
    response = await get(backend, url)
    assert response.status_code == 200, (url, response.text[:200])
    assert response.headers["content-type"] == "image/webp"
    image = Image.open(io.BytesIO(response.content))
    image.load()  # decodes every pixel: a truncated WebP fails here
    assert image.format == "WEBP"
    return image


async def _job(collections: Collections, job_id: str) -> dict[str, Any]:
    found = await collections.jobs.find_one({"job_id": job_id})
    assert found is not None
    return found


async def _chunks(collections: Collections, job_id: str) -> int:
    return await collections.pages.count_documents({"job_id": job_id})


async def _until_a_page_is_stored(
    collections: Collections, job_id: str, worker: asyncio.Task[Any]
) -> None:
    """Wait until the running job has stored a page; fails if its worker ended first."""
    while await _chunks(collections, job_id) == 0:
        assert not worker.done(), "the job ended before any page was stored"
        await asyncio.sleep(0.01)


async def _chapter(backend, auth_headers, chapter_id, book_id="book_1") -> httpx.Response:
    return await backend.api.get(
        f"/api/v1/books/{book_id}/chapters/{chapter_id}", headers=auth_headers("alice")
    )


async def _completed(backend, auth_headers, job_id) -> dict[str, Any]:
    body = (await backend.api.get(f"{JOBS}/{job_id}", headers=auth_headers("alice"))).json()
    assert body["status"] == "completed", body
    response = await _chapter(backend, auth_headers, body["result"]["chapter_id"])
    assert response.status_code == 200
    return response.json()


async def test_every_page_of_a_book_opens_as_an_image_of_its_size(
    collections, backend, submit, run_worker, auth_headers
):
    data = book_pdf()
    job = await submit(data)

    await run_worker(**backend.overrides)

    chapter = await _completed(backend, auth_headers, job["job_id"])
    source = pymupdf.open(stream=data, filetype="pdf")
    pages = chapter["pages"]
    assert [page["page_number"] for page in pages] == list(range(1, 7))
    assert chapter["total_pages"] == 6
    assert chapter["content_mode"] == "pdf_pages"
    assert chapter["pdf_url"] is None
    images = {}
    for page, pdf_page in zip(pages, source, strict=True):
        image = images[page["page_number"] - 1] = await open_image(backend, page["background_url"])
        assert image.size == (page["width"], page["height"])
        thumbnail = await open_image(backend, page["thumbnail_url"])
        assert 200 <= thumbnail.width <= 260
        if pdf_page.number != HUGE:  # 150 DPI; the rotated page is landscape
            assert abs(page["width"] - pdf_page.rect.width * DPI / 72) <= 1
            assert abs(page["height"] - pdf_page.rect.height * DPI / 72) <= 1
    assert pages[ROTATED]["width"] > pages[ROTATED]["height"]  # shown as /Rotate 90 says
    # A 200-inch page is rendered at a lower DPI, within PAGE_MAX_PIXELS, square as the page.
    huge = pages[HUGE]
    assert huge["width"] * huge["height"] <= 12_000_000
    assert huge["width"] == huge["height"] > 3000
    drawing = ImageStat.Stat(images[DRAWING].convert("L"))
    assert drawing.stddev[0] > 20  # lines, curves and fills: not a blank page
    red, _, _ = images[RASTER].getpixel((int(110 * DPI / 72), int(480 * DPI / 72)))
    assert red > 180  # the picture's red field, where the PDF put it
    assert pages[SCANNED]["has_text"] is False
    assert ImageStat.Stat(images[SCANNED].convert("L")).stddev[0] > 20
    assert [page["has_text"] for page in pages] == [True, True, True, True, False, True]
    chunks = await collections.pages.find({"job_id": job["job_id"]}).sort("page_index").to_list()
    assert [chunk["content"] for chunk in chunks] == [page.get_text() for page in source]
    assert "汉字" in chunks[CJK]["content"]
    assert await backend.images(chapter["chapter_id"]) == 2 * 6  # page and thumbnail each


async def test_job_pages_are_listed_while_the_job_runs_and_after(
    client, submit, run_worker, auth_headers
):
    job = await submit(drawing_pdf(40))
    pages_url = f"{JOBS}/{job['job_id']}/pages?limit=100"
    seen_running = []
    worker = asyncio.create_task(run_worker(**ONE_PROCESS))

    while not worker.done():
        status = await client.get(f"{JOBS}/{job['job_id']}", headers=auth_headers("alice"))
        listed = (await client.get(pages_url, headers=auth_headers("alice"))).json()
        if status.json()["status"] == "processing" and listed["items"]:
            first = listed["items"][0]["background_url"]
            opened = await client.get(first)  # listed means its image can be loaded now
            seen_running.append((listed["rendered"], listed["total_pages"], opened.status_code))
        await asyncio.sleep(0.02)
    await worker

    assert seen_running, "the job finished before a poll saw it running"
    assert all(total == 40 and code == 200 for _, total, code in seen_running)
    assert any(rendered < 40 for rendered, _, _ in seen_running)
    after = (await client.get(pages_url, headers=auth_headers("alice"))).json()
    assert after["rendered"] == after["total_pages"] == 40
    assert [item["page_number"] for item in after["items"]] == list(range(1, 41))
    assert all(item["background_url"] and item["thumbnail_url"] for item in after["items"])


async def test_cancel_mid_render_removes_every_image_and_chunk(
    collections, backend, submit, run_worker, auth_headers
):
    job = await submit(drawing_pdf(40))
    worker = asyncio.create_task(run_worker(**backend.overrides, **ONE_PROCESS))
    await _until_a_page_is_stored(collections, job["job_id"], worker)

    cancelled = await backend.api.post(
        f"{JOBS}/{job['job_id']}/cancel", headers=auth_headers("alice")
    )
    await worker

    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    stored = await _job(collections, job["job_id"])
    assert stored["status"] == "cancelled"
    assert await backend.images(stored["chapter_id"]) == 0
    assert await _chunks(collections, job["job_id"]) == 0
    assert await collections.chapters.count_documents({}) == 0


class SentPutsLand:
    """A page store whose PUTs land once sent, whatever their caller does next: a real S3 or
    MongoDB server commits a request whose connection the client dropped, so cancelling the
    caller takes nothing back. Each lands ``delay_s`` after it was sent."""

    def __init__(self, store: PageStore, delay_s: float) -> None:
        self._store = store
        self._delay_s = delay_s
        self.sent: set[asyncio.Task[None]] = set()
        self._gate: asyncio.Event | None = None
        self.holding = asyncio.Event()  # set once a put is held at the gate

    def hold(self) -> None:
        """From now on a sent put lands only once ``release()`` is called (it stays in flight)."""
        self._gate = asyncio.Event()

    def release(self) -> None:
        if self._gate is not None:
            self._gate.set()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def put(self, key: str, data: bytes, content_type: str, owner: str | None = None) -> None:
        sent = asyncio.create_task(self._land(key, data, content_type, owner))
        self.sent.add(sent)
        await asyncio.shield(sent)

    async def _land(self, key: str, data: bytes, content_type: str, owner: str | None) -> None:
        await asyncio.sleep(self._delay_s)
        if self._gate is not None:
            self.holding.set()
            await self._gate.wait()
        await self._store.put(key, data, content_type, owner)


async def test_cancel_leaves_no_image_from_puts_in_flight(
    collections, backend, submit, run_worker, auth_headers, monkeypatch
):
    stores: list[SentPutsLand] = []

    def landing_store(worker_settings: Settings, db: Any) -> SentPutsLand:
        stores.append(SentPutsLand(create_page_store(worker_settings, db), delay_s=0.05))
        return stores[-1]

    monkeypatch.setattr("worker.wiring.create_page_store", landing_store)
    job = await submit(drawing_pdf(40))
    worker = asyncio.create_task(run_worker(**backend.overrides, **ONE_PROCESS))
    await _until_a_page_is_stored(collections, job["job_id"], worker)
    stores[0].hold()  # a put surely in flight when the cancel comes
    await asyncio.wait_for(stores[0].holding.wait(), 60)

    cancelled = await backend.api.post(
        f"{JOBS}/{job['job_id']}/cancel", headers=auth_headers("alice")
    )
    stores[0].release()  # it lands while the stopping run waits for it (SETTLE_S)
    await worker
    await asyncio.gather(*stores[0].sent)  # every put the worker sent has landed

    assert cancelled.json()["status"] == "cancelled"
    stored = await _job(collections, job["job_id"])
    assert stored["status"] == "cancelled"
    assert len(stores[0].sent) > 0
    assert await backend.images(stored["chapter_id"]) == 0
    assert await _chunks(collections, job["job_id"]) == 0


class HungAfterPage:
    """A page store that answers the puts of pages 1 to ``last`` once ``opened`` is set, and
    never answers any other: the store hangs part-way through a job."""

    def __init__(self, store: PageStore, last: int) -> None:
        self._store = store
        self._last = last
        self.opened = asyncio.Event()
        self.hung: list[str] = []  # keys whose put will never be answered

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def put(self, key: str, data: bytes, content_type: str, owner: str | None = None) -> None:
        number = int(key.rsplit("-", 1)[1].split(".")[0])
        if number > self._last:
            self.hung.append(key)
            await asyncio.Future()  # no answer, ever
        await self.opened.wait()
        await self._store.put(key, data, content_type, owner)


async def test_cancel_with_the_page_store_hung_still_ends_the_run(
    collections, app, client, submit, run_worker, auth_headers, monkeypatch
):
    stores: list[HungAfterPage] = []

    def hanging_store(worker_settings: Settings, db: Any) -> HungAfterPage:
        stores.append(HungAfterPage(create_page_store(worker_settings, db), last=3))
        return stores[-1]

    monkeypatch.setattr("worker.wiring.create_page_store", hanging_store)
    monkeypatch.setattr("worker.run.pages.SETTLE_S", 0.2)
    job = await submit(drawing_pdf(40))
    worker = asyncio.create_task(run_worker(progress_interval_s=0))
    while not stores or not stores[0].hung:
        assert not worker.done(), "the job ended before the store hung"
        await asyncio.sleep(0.01)

    cancelled = await client.post(f"{JOBS}/{job['job_id']}/cancel", headers=auth_headers("alice"))
    # Pages 1-3 land now: their progress write finds the job cancelled, and the run stops with
    # the puts of later pages still unanswered. Were it to wait for them unbounded, it would
    # never end.
    stores[0].opened.set()
    await asyncio.wait_for(worker, timeout=60)

    assert cancelled.json()["status"] == "cancelled"
    stored = await _job(collections, job["job_id"])
    assert stored["status"] == "cancelled"
    store = app.state.services.store.images
    assert await store.count(chapter_prefix(stored["chapter_id"])) == 0
    assert await _chunks(collections, job["job_id"]) == 0


async def test_render_crash_fails_the_job_and_leaves_no_images(
    collections, backend, submit, run_worker, settings, monkeypatch
):
    def pool_with_hook(worker_settings: Settings) -> RenderPool:
        return RenderPool(
            processes=2,
            memory_limit_bytes=worker_settings.job_memory_limit_mb * 1024 * 1024,
            page_time_limit_s=worker_settings.page_time_limit_s,
            page_hook=abort_at_titled_page,
        )

    monkeypatch.setattr("worker.wiring.create_render_pool", pool_with_hook)
    job = await submit(titled(drawing_pdf(6), "abort-at-4"))

    await run_worker(**backend.overrides)

    stored = await _job(collections, job["job_id"])
    assert stored["status"] == "failed"
    assert stored["error_code"] == "PDF_CRASHED"
    assert await backend.images(stored["chapter_id"]) == 0
    assert await _chunks(collections, job["job_id"]) == 0
    assert await collections.chapters.count_documents({}) == 0


async def test_too_many_pages_fails_clearly_and_leaves_no_images(
    collections, backend, submit, run_worker, auth_headers
):
    job = await submit(drawing_pdf(5))

    await run_worker(**backend.overrides, max_pages=3)

    body = (await backend.api.get(f"{JOBS}/{job['job_id']}", headers=auth_headers("alice"))).json()
    assert body["status"] == "failed"
    assert body["error"] == "PDF has 5 pages; at most 3 are allowed (MAX_PAGES)"
    stored = await _job(collections, job["job_id"])
    assert stored["error_code"] == "PDF_TOO_MANY_PAGES"
    assert await backend.images(stored["chapter_id"]) == 0
    assert await _chunks(collections, job["job_id"]) == 0


async def test_delete_chapter_leaves_no_images_chunks_or_chapter(
    collections, backend, submit, run_worker, auth_headers
):
    job = await submit(drawing_pdf(2))
    await run_worker(**backend.overrides)
    chapter = await _completed(backend, auth_headers, job["job_id"])
    chapter_id = chapter["chapter_id"]
    assert await backend.images(chapter_id) == 4

    deleted = await backend.api.delete(
        f"/api/v1/books/book_1/chapters/{chapter_id}", headers=auth_headers("alice")
    )

    assert deleted.status_code == 204
    assert await backend.images(chapter_id) == 0
    assert await _chunks(collections, job["job_id"]) == 0
    assert (await _chapter(backend, auth_headers, chapter_id)).status_code == 404
    assert (await get(backend, chapter["pages"][0]["background_url"])).status_code in (403, 404)


async def test_pdf_file_chapter_has_no_page_images_and_a_pdf_url_that_opens(
    collections, client, submit, run_worker, auth_headers, app
):
    data = text_pdf(3)
    job = await submit(data, content_mode="pdf_file")

    await run_worker()

    backend = Backend(
        "gridfs", {}, client, app.state.services.store.images, app.state.services.store
    )
    chapter = await _completed(backend, auth_headers, job["job_id"])
    assert chapter["content_mode"] == "pdf_file"
    assert [page["background_url"] for page in chapter["pages"]] == [None] * 3
    assert [page["thumbnail_url"] for page in chapter["pages"]] == [None] * 3
    response = await client.get(chapter["pdf_url"])  # signed: no Authorization
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/pdf"
    assert response.content == data
    assert await backend.images(chapter["chapter_id"]) == 1  # the PDF, no page images
    assert await _chunks(collections, job["job_id"]) == 3  # its text is still extracted


# --- Output nobody removed: a dead run, an unreachable store, a job deleted while it ran -------


async def _left_by_a_dead_run(backend: Backend, submit: Any) -> dict[str, Any]:
    apply, collections = backend.data.jobs.apply, backend.data.collections
    """A job claimed by a run that stored a page and its chunk, then died (its worker killed)."""
    job = await submit(drawing_pdf(4))
    claimed = await apply(lifecycle.claim(job["job_id"], "m", utcnow()))
    assert claimed is not None
    await backend.data.images.put(
        page_key(claimed["chapter_id"], 1), b"RIFF-page", "image/webp", owner="alice"
    )
    await collections.pages.insert_one(
        {"job_id": job["job_id"], "chapter_id": claimed["chapter_id"], "page_index": 0}
    )
    return claimed


async def _sweep_with(settings: Settings, data: Store, queue: Any) -> dict[str, int]:
    swept = settings.model_copy(update={"stale_after_s": 0.001})
    await asyncio.sleep(0.01)  # the job's last write is older than STALE_AFTER_S
    return await sweep({"settings": swept, "redis": queue, "store": data})


async def test_cancelled_job_whose_run_died_is_cleaned_by_the_sweeper(
    collections, backend, submit, auth_headers, settings, queue
):
    claimed = await _left_by_a_dead_run(backend, submit)

    cancelled = await backend.api.post(
        f"{JOBS}/{claimed['job_id']}/cancel", headers=auth_headers("alice")
    )
    left = await backend.images(claimed["chapter_id"])  # the run that holds it would remove it
    swept = await _sweep_with(settings, backend.data, queue)

    assert cancelled.json()["status"] == "cancelled"
    assert left == 1
    assert swept["discarded"] == 1
    assert await backend.images(claimed["chapter_id"]) == 0
    assert await _chunks(collections, claimed["job_id"]) == 0
    stored = await _job(collections, claimed["job_id"])
    assert stored["status"] == "cancelled"
    assert stored["discard_pending"] is False
    assert (await _sweep_with(settings, backend.data, queue))["discarded"] == 0


async def test_output_the_page_store_could_not_remove_is_removed_once_it_is_back(
    collections, backend, submit, auth_headers, settings, queue
):
    claimed = await _left_by_a_dead_run(backend, submit)
    await backend.api.post(f"{JOBS}/{claimed['job_id']}/cancel", headers=auth_headers("alice"))
    unreachable = S3PageStore.from_config(
        settings.model_copy(
            update={
                "s3_endpoint_url": f"http://127.0.0.1:{free_port()}",  # nothing listens
                "s3_bucket": "page-images",
            }
        )
    )

    try:
        during = await _sweep_with(
            settings, Store.of(backend.data.client, settings, images=unreachable), queue
        )
    finally:
        await unreachable.aclose()
    pending = (await _job(collections, claimed["job_id"]))["discard_pending"]
    after = await _sweep_with(settings, backend.data, queue)

    assert during["discarded"] == 0  # the sweep went on; the job stays marked
    assert pending is True
    assert after["discarded"] == 1
    assert await backend.images(claimed["chapter_id"]) == 0
    assert await _chunks(collections, claimed["job_id"]) == 0


async def test_job_deleted_while_it_runs_leaves_no_image_and_no_page(
    collections, backend, submit, run_worker, auth_headers
):
    job = await submit(drawing_pdf(40))
    worker = asyncio.create_task(run_worker(**backend.overrides, **ONE_PROCESS))
    await _until_a_page_is_stored(collections, job["job_id"], worker)
    chapter_id = (await _job(collections, job["job_id"]))["chapter_id"]

    deleted = await backend.api.delete(f"{JOBS}/{job['job_id']}", headers=auth_headers("alice"))
    await worker

    assert deleted.status_code == 204
    assert await collections.jobs.count_documents({}) == 0
    assert await backend.images(chapter_id) == 0
    assert await _chunks(collections, job["job_id"]) == 0
    assert await collections.chapters.count_documents({}) == 0


async def test_image_store_down_cancel_still_cancels_and_deletes_are_503_losing_nothing(
    collections, apply, app, client, submit, run_worker, auth_headers, settings, other_app
):
    done = await submit(drawing_pdf(2))
    await run_worker()
    chapter_id = (await _job(collections, done["job_id"]))["chapter_id"]
    # A job a worker started, stored a page of, and handed back (stopping): pending, with output.
    waiting = await submit(drawing_pdf(2))
    claimed = await apply(lifecycle.claim(waiting["job_id"], "m", utcnow()))
    assert claimed is not None
    await app.state.services.store.images.put(
        page_key(claimed["chapter_id"], 1), b"RIFF-page", "image/webp", owner="alice"
    )
    await apply(lifecycle.release(waiting["job_id"], utcnow(), lease_id=claimed["lease_id"]))
    unreachable = settings.model_copy(
        update={
            "page_store": "s3",
            "s3_endpoint_url": f"http://127.0.0.1:{free_port()}",  # nothing listens
            "s3_bucket": "page-images",
        }
    )
    headers = auth_headers("alice")

    async with other_app(unreachable) as api:
        cancelled = await api.post(f"{JOBS}/{waiting['job_id']}/cancel", headers=headers)
        chapter_delete = await api.delete(
            f"/api/v1/books/book_1/chapters/{chapter_id}", headers=headers
        )
        job_delete = await api.delete(f"{JOBS}/{waiting['job_id']}", headers=headers)

    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    assert (await _job(collections, waiting["job_id"]))[
        "discard_pending"
    ] is True  # for the sweeper
    unavailable = {
        "detail": "Service temporarily unavailable: page image storage is unreachable, retry later"
    }
    for refused in (chapter_delete, job_delete):
        assert refused.status_code == 503
        assert refused.json() == unavailable
        assert refused.headers["retry-after"] == "5"
    # Nothing was lost: the chapter, its pages and its images, and the job, are all still there.
    chapter = await client.get(f"/api/v1/books/book_1/chapters/{chapter_id}", headers=headers)
    assert chapter.status_code == 200
    assert await app.state.services.store.images.count(chapter_prefix(chapter_id)) == 4
    assert await _job(collections, waiting["job_id"]) is not None
    assert await app.state.services.store.images.count(chapter_prefix(claimed["chapter_id"])) == 1


async def test_upload_landing_after_the_run_gave_up_is_removed_by_the_sweeper(
    collections, backend, submit, run_worker, auth_headers, settings, queue, monkeypatch
):
    stores: list[SentPutsLand] = []

    def landing_store(worker_settings: Settings, db: Any) -> SentPutsLand:
        stores.append(SentPutsLand(create_page_store(worker_settings, db), delay_s=0.2))
        return stores[-1]

    monkeypatch.setattr("worker.wiring.create_page_store", landing_store)
    monkeypatch.setattr("worker.run.pages.SETTLE_S", 0)  # the run gives up on its uploads at once
    job = await submit(drawing_pdf(40))
    worker = asyncio.create_task(run_worker(**backend.overrides, **ONE_PROCESS))
    await _until_a_page_is_stored(collections, job["job_id"], worker)
    # A put in flight when the cancel comes, whatever this machine's speed: held until the run
    # has given up on it and discarded the chapter's images.
    stores[0].hold()
    await asyncio.wait_for(stores[0].holding.wait(), 60)

    await backend.api.post(f"{JOBS}/{job['job_id']}/cancel", headers=auth_headers("alice"))
    await worker
    stores[0].release()
    await asyncio.gather(*stores[0].sent)  # they landed after the run's own discard
    chapter_id = (await _job(collections, job["job_id"]))["chapter_id"]
    landed_late = await backend.images(chapter_id)
    marked = (await _job(collections, job["job_id"]))["discard_pending"]
    swept = await _sweep_with(settings, backend.data, queue)

    assert landed_late > 0
    assert marked is True  # a run's discard is not the last word
    assert swept["discarded"] == 1
    assert await backend.images(chapter_id) == 0
    assert (await _job(collections, job["job_id"]))["discard_pending"] is False
