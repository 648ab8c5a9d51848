"""Chaos on real processes: nothing lost, nothing stuck, nothing done twice (issue 12).

Each test runs a whole deployment of its own (tests/chaos/stack.py: mongod, redis-server, the
API under granian, ``python -m worker`` processes) with small settings (STALE_AFTER_S and
WORKER_STALE_S 3, or 8 where no job may run twice, HEARTBEAT_INTERVAL_S 0.5, SWEEP_INTERVAL_S 1,
PENDING_GRACE_S 2),
submits jobs of 1,200 text-heavy pages through the API, polls them as a browser would, and
breaks one thing while some jobs are being extracted and others wait. Then every job must
complete exactly once with every page and its chapter, nothing may stay pending or processing,
and no poll may have had a 5xx but 503.
"""

from __future__ import annotations

import asyncio
import signal
import time

import httpx
import pytest

from service.domain.job import creating_chapter
from tests.chaos.stack import IMAGES, TEXT, Stack, Verdict, Worker
from tests.support.pdfs import book_pdf

PAGES = 1200  # text only: the PDF itself is the chapter (content_mode pdf_file)
JOBS = 6
RENDERED_PAGES = 80  # every page rendered to an image in GridFS (pdf_pages)
INDEXED_PAGES = 20  # a chapter of about 70 passages to embed
MONGODB_UP = 'pcj_worker_dependency_up{dependency="mongodb"}'
REDIS_UP = 'pcj_worker_dependency_up{dependency="redis"}'
LAST_BEAT = "pcj_worker_last_heartbeat_timestamp_seconds"
# For the tests where no job may run twice: a worker whose event loop stalls (a loaded machine)
# for less than this keeps its jobs. The tests that lose a worker keep the stack's 3 s: they
# wait it out.
STALE_AFTER_S = 8
PATIENT = {"STALE_AFTER_S": str(STALE_AFTER_S), "WORKER_STALE_S": str(STALE_AFTER_S)}
# Every page stored, the chapter next: a run below it is round trips away from completing.
CREATING_CHAPTER = creating_chapter(PAGES)[0]


@pytest.fixture(scope="module")
def book() -> bytes:
    return book_pdf(PAGES)


@pytest.fixture(scope="module")
def picture_book() -> bytes:
    return book_pdf(RENDERED_PAGES)


async def _submit(stack: Stack, book: bytes, count: int, first: int = 0, content_mode=TEXT):
    """Create ``count`` jobs through the API and start polling each; ids and pollers."""
    async with httpx.AsyncClient(timeout=30) as client:
        ids = [
            await stack.submit(client, book, f"book-{first + n}.pdf", content_mode)
            for n in range(count)
        ]
    return ids, [asyncio.create_task(stack.poll(job_id)) for job_id in ids]


async def _finish(
    stack: Stack,
    ids: list[str],
    pollers: list[asyncio.Task],
    rendered: dict[str, int] | None = None,
) -> Verdict:
    everything = ids + list(rendered or {})
    await stack.until(lambda: stack.all_finished(everything), 120, "every job to finish")
    await asyncio.wait_for(asyncio.gather(*pollers), 30)
    expected = {job_id: PAGES for job_id in ids} | (rendered or {})
    return await stack.verify(expected, rendered=set(rendered or {}))


def _assert_nothing_lost_or_stuck(verdict: Verdict, stack: Stack) -> None:
    assert verdict.stuck == [], stack.diagnosis()
    assert verdict.lost == []
    assert verdict.duplicated == []
    assert verdict.unfinished == 0
    assert verdict.bad_answers == {}


def _metric_is(workers, series: str, value: float):
    return lambda: all(worker.metric(series) == value for worker in workers)


def _no_beat_for(workers, seconds: float):
    """Every worker's last heartbeat (0 if it never beat) is older than ``seconds``."""

    def silent(worker) -> bool:
        beat = worker.metric(LAST_BEAT)
        return beat is not None and time.time() - beat > seconds

    return lambda: all(silent(worker) for worker in workers)


async def test_mongodb_killed_and_restarted(stack: Stack, book: bytes, picture_book: bytes):
    await stack.start(**PATIENT)
    workers = [stack.add_worker(concurrency=2), stack.add_worker(concurrency=2)]
    # Page images go to GridFS: the outage hits their writes too.
    pictures, picture_pollers = await _submit(stack, picture_book, 2, content_mode=IMAGES)
    ids, pollers = await _submit(stack, book, JOBS, first=2)

    async def both_kinds_under_way():
        rendering = any(d["status"] == "processing" for d in await stack.jobs(pictures))
        # Any page of a text job stored will do: the picture jobs share the workers' one render
        # process with them, so on a slow machine text jobs crawl until the pictures are done.
        return rendering and await stack.mid_job(ids, low=31)

    await stack.until(both_kinds_under_way, 90, "pages rendering, jobs mid-way and jobs waiting")

    stack.kill_mongod()
    await stack.until(_metric_is(workers, MONGODB_UP, 0), 20, "the workers to see the outage")
    # Down until every heartbeat is stale, so that the sweeps just after it may find running
    # jobs stale only because their workers could not beat: they must be left alone.
    await stack.until(_no_beat_for(workers, STALE_AFTER_S), 30, "every heartbeat to go stale")
    await asyncio.to_thread(stack.restart_mongod)
    await stack.until(_metric_is(workers, MONGODB_UP, 1), 30, "the workers to reconnect")
    verdict = await _finish(
        stack, ids, pollers + picture_pollers, dict.fromkeys(pictures, RENDERED_PAGES)
    )

    _assert_nothing_lost_or_stuck(verdict, stack)
    assert verdict.answers["503"] > 0  # the polls saw the outage, as 503s
    assert verdict.transport_errors == {}
    # The outage was longer than STALE_AFTER_S, yet no run lost its job to the sweeper.
    assert set(verdict.attempts.values()) == {1}


async def test_chapters_being_indexed_survive_a_mongod_restart(stack: Stack):
    """A chapter whose passages are being embedded when mongod dies ends searchable, every
    passage stored once and embedded, its index never handed to another run."""
    await stack.start(INDEX_CHAPTERS="true", **PATIENT)
    workers = [stack.add_worker()]
    ids, pollers = await _submit(stack, book_pdf(INDEXED_PAGES), 2)
    chapters = stack.db.book_chapters

    async def embedding_under_way():
        return await chapters.count_documents({"search.embedded": {"$gt": 0}}) > 0

    await stack.until(embedding_under_way, 120, "a chapter's passages being embedded")
    stack.kill_mongod()
    await stack.until(_metric_is(workers, MONGODB_UP, 0), 20, "the worker to see the outage")
    await asyncio.to_thread(stack.restart_mongod)
    await stack.until(_metric_is(workers, MONGODB_UP, 1), 30, "the worker to reconnect")
    await asyncio.wait_for(asyncio.gather(*pollers), 60)

    async def all_searchable():
        return await chapters.count_documents({"search.status": "ready"}) == len(ids)

    await stack.until(all_searchable, 180, "every chapter to be indexed")
    async for chapter in chapters.find({"job_id": {"$in": ids}}):
        search = chapter["search"]
        passages = await stack.db.document_chunks.find(
            {"chapter_id": chapter["chapter_id"]}, {"chunk_index": 1, "embedding": 1}
        ).to_list()
        indexes = sorted(passage["chunk_index"] for passage in passages)
        assert indexes == list(range(search["chunks"])), stack.diagnosis()
        assert all(passage.get("embedding") for passage in passages)
        assert search["attempts"] == 1


async def test_redis_killed_and_restarted_empty(stack: Stack, book: bytes):
    await stack.start(**PATIENT)
    workers = [stack.add_worker(), stack.add_worker()]
    ids, pollers = await _submit(stack, book, JOBS)
    await stack.until(lambda: stack.mid_job(ids), 90, "jobs mid-way and jobs waiting")

    stack.kill_redis()
    await stack.until(_metric_is(workers, REDIS_UP, 0), 20, "the workers to see the outage")
    # Jobs created meanwhile are stored; their doorbell cannot ring.
    later, later_pollers = await _submit(stack, book, 2, first=JOBS)
    await asyncio.to_thread(stack.restart_redis)
    await stack.until(_metric_is(workers, REDIS_UP, 1), 30, "the workers to reconnect")
    verdict = await _finish(stack, ids + later, pollers + later_pollers)

    _assert_nothing_lost_or_stuck(verdict, stack)
    assert verdict.transport_errors == {}
    assert set(verdict.attempts.values()) == {1}  # the running jobs went on through it
    assert all(worker.popen.poll() is None for worker in workers)


async def test_worker_killed_mid_job(stack: Stack, book: bytes):
    await stack.start()
    workers = [stack.add_worker(), stack.add_worker()]
    ids, pollers = await _submit(stack, book, JOBS)
    await stack.until(lambda: stack.mid_job(ids), 90, "jobs mid-way and jobs waiting")
    victim, held = await _stop_one_holding_a_job(stack, workers, ids)

    victim.kill(signal.SIGKILL)
    verdict = await _finish(stack, ids, pollers)

    _assert_nothing_lost_or_stuck(verdict, stack)
    assert verdict.transport_errors == {}
    # Resumed by the other worker after STALE_AFTER_S.
    assert all(verdict.attempts[job_id] == 2 for job_id in held)


async def test_worker_stalled_past_stale_after_while_another_is_free(stack: Stack, book: bytes):
    # Issue 10's data loss: the stalled run wakes up after another run completed its job.
    await stack.start()
    workers = [stack.add_worker(concurrency=2), stack.add_worker(concurrency=3)]
    ids, pollers = await _submit(stack, book, JOBS)
    await stack.until(lambda: stack.mid_job(ids), 90, "jobs mid-way and jobs waiting")
    stalled, held = await _stop_one_holding_a_job(stack, workers, ids)

    await stack.until(
        lambda: _all_completed(stack, held), 90, "the other worker to complete the stalled jobs"
    )
    stalled.send(signal.SIGCONT)
    await stack.until(
        lambda: set(held) <= set(stack.lease_losses(stalled)), 30, "the stalled runs to stop"
    )
    verdict = await _finish(stack, ids, pollers)

    _assert_nothing_lost_or_stuck(verdict, stack)  # every page and chapter still there
    assert verdict.transport_errors == {}
    assert all(verdict.attempts[job_id] == 2 for job_id in held)
    assert stalled.popen.poll() is None  # and the stalled worker lives on


async def test_api_restarted_while_polls_are_in_flight(stack: Stack, book: bytes):
    await stack.start(**PATIENT)
    stack.add_worker()
    stack.add_worker()
    ids, pollers = await _submit(stack, book, JOBS)
    await stack.until(lambda: stack.mid_job(ids), 90, "jobs mid-way and jobs waiting")
    answered_before = len(stack.polls)

    await stack.restart_api()
    verdict = await _finish(stack, ids, pollers)

    _assert_nothing_lost_or_stuck(verdict, stack)
    assert answered_before > 0
    # While no API listened, connections were refused (or an idle kept-alive connection was
    # closed as a poll went out on it); no poll was cut off mid-answer.
    assert set(verdict.transport_errors) <= {"ConnectError", "ClosedBeforeAnswer"}
    assert set(verdict.attempts.values()) == {1}


# The deploy storm: one long job, its worker stopped (SIGTERM) and started again each time it
# has stored pages, STORM_RESTARTS times. The job stays cheap per page (text only) and long in
# pages, so that every restart lands mid-job.
STORM_PAGES = 1500
STORM_RESTARTS = 4
# What one interruption may cost again, at most: the pages rendered but not yet written (one
# batch of worker/run/pages.py) and the uploads in flight.
ONE_BATCH = 64 + 8


@pytest.fixture(scope="module")
def long_book() -> bytes:
    return book_pdf(STORM_PAGES, lines=5)


async def test_deploy_storm_resumes_where_it_stopped_each_time(stack: Stack, long_book: bytes):
    await stack.start()
    worker = stack.add_worker()
    (job_id,), pollers = await _submit(stack, long_book, 1)
    stored = 0
    restarts = 0

    async def pages() -> int:
        return await stack.db.chapter_pages.count_documents({"job_id": job_id})

    async def stored_more() -> bool:
        return await stack.all_finished([job_id]) or await pages() > stored

    while restarts < STORM_RESTARTS:
        await stack.until(stored_more, 60, "the restarted worker to store pages")
        if await stack.all_finished([job_id]):
            break
        await asyncio.to_thread(worker.stop)  # SIGTERM: it hands the job back and exits
        stored = await pages()
        worker.start()  # a rolling deploy
        restarts += 1
    await stack.until(lambda: stack.all_finished([job_id]), 120, "the job to finish")
    await asyncio.wait_for(asyncio.gather(*pollers), 30)
    exposed = worker.metric("pcj_worker_pages_rendered_total")  # the last process's own count
    await asyncio.to_thread(worker.stop)  # it logs that count as it exits, as each one did
    verdict = await stack.verify({job_id: STORM_PAGES})

    _assert_nothing_lost_or_stuck(verdict, stack)
    assert restarts == STORM_RESTARTS, "the job finished before the storm was over"
    # Each page once, but for at most one batch per interruption.
    rendered = worker.rendered()
    assert rendered is not None
    assert exposed is not None
    assert 0 < exposed <= rendered
    assert STORM_PAGES <= rendered <= STORM_PAGES + restarts * ONE_BATCH
    assert verdict.attempts[job_id] == restarts + 1
    # What the browser saw, poll after poll, never went back.
    seen = [(p.progress, p.processed) for p in stack.polls if p.processed is not None]
    assert len(seen) > restarts
    assert seen == sorted(seen)


async def _stop_one_holding_a_job(
    stack: Stack, workers: list[Worker], ids: list[str]
) -> tuple[Worker, list[str]]:
    """SIGSTOP a worker while it holds a job being extracted: the worker, and those jobs.

    They are read once it has stopped: a job read as running before could complete in between
    (a text job takes half a second on a fast machine). A stopped run below CREATING_CHAPTER
    cannot complete, even by a write in flight: its next writes (the chapter phase, the chapter,
    the completion) each wait for the answer to the one before. A worker whose jobs moved on
    meanwhile is continued, and the next one tried."""
    chosen: list[tuple[Worker, list[str]]] = []

    async def stop_one() -> bool:
        for worker in workers:
            if not _being_extracted(stack.claims(worker), await stack.jobs(ids)):
                continue
            held: list[str] = []
            try:
                await stack.pause(worker)
                held = _being_extracted(stack.claims(worker), await stack.jobs(ids))
            finally:
                if not held:
                    worker.send(signal.SIGCONT)
            if held:
                chosen.append((worker, held))
                return True
        return False

    await stack.until(stop_one, 30, "a worker stopped while a job it holds is being extracted")
    return chosen[0]


def _being_extracted(claims: list[str], docs: list[dict]) -> list[str]:
    """The claimed jobs still processing below CREATING_CHAPTER."""
    found = {d["job_id"]: d for d in docs}
    return [
        job_id
        for job_id in dict.fromkeys(claims)
        if (doc := found.get(job_id))
        and doc["status"] == "processing"
        and doc["progress"] < CREATING_CHAPTER
    ]


async def _all_completed(stack: Stack, job_ids: list[str]) -> bool:
    return all(d["status"] == "completed" for d in await stack.jobs(job_ids))
