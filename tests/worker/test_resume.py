"""A run that takes over a job resumes where the last one stopped (worker/run/checkpoint.py).

Real render processes, a real mongod. The first run of each job is held on one page by a render
hook (``tests/support/render_hook.py``: the PDF's title names the page and a folder) and then
stopped as a worker stopping would stop it; the second run must render only what was not stored
whole, and nothing a client reads may go back. The job is followed through a change stream from
its creation, so every state a client could have seen is checked.
"""

from __future__ import annotations

import asyncio
import inspect
import re
from pathlib import Path
from typing import Any

import pytest

from service.domain.page_keys import chapter_prefix
from tests.support.pdfs import book_pdf, drawing_pdf, titled
from tests.support.render_hook import hold_at_titled_page
from worker import metrics
from worker.rendering.pool import RenderPool
from worker.run.checkpoint import weigh
from worker.run.task import process_pdf_chapter

# A bound on waits for something that takes a moment, so that a broken run fails its test
# instead of hanging the session: generous, never a timing check.
WAIT_LIMIT_S = 60.0
JOBS = "/api/v1/books/jobs"


@pytest.fixture
async def pool(settings):
    """One render process, held on the page a PDF's title names."""
    render_pool = RenderPool(
        processes=1,
        memory_limit_bytes=settings.job_memory_limit_mb * 1024 * 1024,
        page_time_limit_s=WAIT_LIMIT_S,
        page_hook=hold_at_titled_page,
    )
    await render_pool.start()
    yield render_pool
    await render_pool.aclose()


def _ctx(app, settings, pool, **overrides: Any) -> dict[str, Any]:
    return {
        "settings": settings.model_copy(update={"progress_interval_s": 0, **overrides}),
        "render_pool": pool,
        "store": app.state.services.store,
        "redis": app.state.services.queue,
    }


def _rendered() -> float:
    return metrics.RENDERED._value.get()


async def _until(predicate, what: str) -> None:
    """Poll ``predicate`` (plain or async) every 20 ms; fail naming ``what`` past the bound."""
    for _ in range(int(WAIT_LIMIT_S / 0.02)):
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


class Seen:
    """Every version of a job a client could read, from a change stream opened before it ran."""

    def __init__(self, collections, job_id: str) -> None:
        self.states: list[dict[str, Any]] = []
        self._collections, self._job_id = collections, job_id
        self._task: asyncio.Task[None] | None = None
        self._open = asyncio.Event()

    async def __aenter__(self) -> Seen:
        self._task = asyncio.create_task(self._follow())
        await self._open.wait()
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._task is not None
        await asyncio.wait_for(self._task, WAIT_LIMIT_S)

    async def _follow(self) -> None:
        pipeline = [{"$match": {"fullDocument.job_id": self._job_id}}]
        async with await self._collections.jobs.watch(
            pipeline, full_document="updateLookup"
        ) as stream:
            self._open.set()
            async for change in stream:
                doc = change["fullDocument"]
                self.states.append(doc)
                if doc["status"] == "completed":
                    return


def _never_down(states: list[dict[str, Any]]) -> None:
    """Progress, pages_processed and "Processed i/n" only ever go up."""
    progress = [state["progress"] for state in states]
    processed = [state.get("pages_processed", 0) for state in states]
    counted = [
        int(match.group(1))
        for state in states
        if (match := re.match(r"Processed (\d+)/\d+ pages", state["message"]))
    ]
    assert progress == sorted(progress), progress
    assert processed == sorted(processed), processed
    assert counted == sorted(counted), counted


async def _stop_held_run(collections, tmp_path: Path, run: asyncio.Task[str], job_id: str) -> int:
    """Once the first run is held and has stored pages, stop it as a stopping worker does (its
    task cancelled) and let the held page go; how many pages it stored."""
    await _until((tmp_path / "held").exists, "the first run to be held")

    async def stored_some() -> bool:
        return bool(await collections.pages.count_documents({"job_id": job_id}))

    await _until(stored_some, "the first run to store a page")
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    (tmp_path / "go").touch()
    job = await collections.jobs.find_one({"job_id": job_id})
    assert job["status"] == "pending"  # handed back, to be resumed
    return await collections.pages.count_documents({"job_id": job_id})


async def test_a_resumed_job_renders_only_the_pages_not_stored_and_never_goes_back(
    app, settings, collections, submit, pool, tmp_path
):
    pages = 240
    job = await submit(titled(book_pdf(pages), f"hold-at-200:{tmp_path}"), content_mode="pdf_file")
    job_id = job["job_id"]
    async with Seen(collections, job_id) as seen:
        first = asyncio.create_task(process_pdf_chapter(_ctx(app, settings, pool), job_id))
        stored = await _stop_held_run(collections, tmp_path, first, job_id)
        before = _rendered()

        outcome = await process_pdf_chapter(_ctx(app, settings, pool), job_id)

    rendered_again = _rendered() - before
    done = await collections.jobs.find_one({"job_id": job_id})
    assert outcome == "completed"
    assert 0 < stored < pages
    assert rendered_again == pages - stored  # not one stored page rendered twice
    assert (done["status"], done["attempts"], done["pages_processed"]) == (
        "completed", 2, pages,
    )  # fmt: skip
    assert await collections.pages.count_documents({"job_id": job_id}) == pages
    _never_down(seen.states)


async def test_a_resumed_job_holds_the_text_of_the_pages_it_kept(
    app, settings, collections, submit, pool, tmp_path
):
    # Text is taken from the quota a megabyte at a time (worker/run/room.py): these pages are
    # far less, so the first run stored pages it had not taken yet when it stopped.
    pages = 40
    data = titled(book_pdf(pages), f"hold-at-30:{tmp_path}")
    job = await submit(data, content_mode="pdf_file")
    job_id = job["job_id"]
    first = asyncio.create_task(process_pdf_chapter(_ctx(app, settings, pool), job_id))
    stored = await _stop_held_run(collections, tmp_path, first, job_id)

    outcome = await process_pdf_chapter(_ctx(app, settings, pool), job_id)

    done = await collections.jobs.find_one({"job_id": job_id})
    text = sum(
        [
            len(page["content"].encode())
            + sum(len(warning.encode()) for warning in page["warnings"])
            + len(page["words"])
            async for page in collections.pages.find({"job_id": job_id})
        ]
    )
    held = await app.state.services.store.usage.held(chapter_prefix(done["chapter_id"]))
    assert outcome == "completed"
    assert 0 < stored < pages
    assert text > 0
    assert held == text + len(data)  # every page's text, kept or rendered, and the PDF's copy


def test_a_kept_page_reports_its_problem_as_a_rendered_page_does():
    kept = [
        {"page_index": 0, "warnings": ["first", "second", "... and 58 more warnings"]},
        {"page_index": 1, "error": "syntax error in content stream"},
        {"page_index": 2},
    ]

    checkpoint = weigh(kept, set(), 3)

    assert checkpoint.problems == [
        {"page_number": 1, "error": "first; second (60 warnings)", "warnings": 60},
        {"page_number": 2, "error": "syntax error in content stream", "warnings": 0},
    ]


async def test_a_stored_page_whose_image_is_gone_is_rendered_again_and_replaced(
    app, settings, collections, submit, pool, tmp_path
):
    pages = 12
    job = await submit(titled(drawing_pdf(pages), f"hold-at-8:{tmp_path}"))  # pdf_pages: images
    job_id = job["job_id"]
    first = asyncio.create_task(process_pdf_chapter(_ctx(app, settings, pool), job_id))
    stored = await _stop_held_run(collections, tmp_path, first, job_id)
    # The page store lost one stored page's image; its page document still names it.
    page = await collections.pages.find_one({"job_id": job_id}, sort=[("page_index", 1)])
    lost = page["image"]["key"]
    await collections.image_files.delete_one({"_id": lost})
    await collections.image_chunks.delete_many({"files_id": lost})
    before = _rendered()

    outcome = await process_pdf_chapter(_ctx(app, settings, pool), job_id)

    rendered_again = _rendered() - before
    done = await collections.jobs.find_one({"job_id": job_id})
    images = app.state.services.store.images
    present = await images.keys(chapter_prefix(done["chapter_id"]))
    written = await collections.pages.find({"job_id": job_id}).to_list()
    assert outcome == "completed"
    assert rendered_again == pages - stored + 1  # the rest, and the page whose image was gone
    assert len(written) == pages
    assert all({c["image"]["key"], c["thumbnail"]["key"]} <= present for c in written)
    assert lost in present


async def test_a_lost_lease_stops_the_run_while_its_page_still_renders(
    app, settings, collections, submit, pool, tmp_path, client, auth_headers
):
    job = await submit(titled(book_pdf(40), f"hold-at-20:{tmp_path}"), content_mode="pdf_file")
    job_id = job["job_id"]
    ctx = _ctx(app, settings, pool, heartbeat_interval_s=0.05)
    run = asyncio.create_task(process_pdf_chapter(ctx, job_id))
    try:
        await _until((tmp_path / "held").exists, "the run to be held")

        cancelled = await client.post(f"{JOBS}/{job_id}/cancel", headers=auth_headers("alice"))
        # The page is held until the run has ended: only its heartbeat can tell it the lease is
        # gone (a run that waited for its next write would wait for ever).
        outcome = await asyncio.wait_for(run, WAIT_LIMIT_S / 3)
    finally:
        (tmp_path / "go").touch()

    assert cancelled.status_code == 200
    assert outcome == "cancelled"
    assert await collections.pages.count_documents({"job_id": job_id}) == 0
