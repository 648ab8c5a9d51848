"""MongoDB as a three-member replica set, its primary SIGKILLed mid-job and brought back.

A whole deployment (tests/chaos/stack.py) on a replica set of three ``mongod`` members with a
one-second election timeout (devstack/embedded.py), two workers and the API; jobs rendering
(text pages, and one job of page images in GridFS), polls every 200 ms, event streams open,
and clients creating jobs through the election. Then: every job completes exactly once with
every page; every job and upload acknowledged to a client is there (writes wait for a majority:
service/store/mongo.py); polls see 503 at most, never 500; each event stream, reconnecting with
``Last-Event-ID`` as EventSource does, sees every page and its job's states in order, none twice.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from service.domain.event_ids import parse_event_id
from tests.chaos.stack import IMAGES, JOBS, TEXT, Follower, Stack
from tests.support.pdfs import book_pdf

PAGES = 600
RENDERED_PAGES = 30
# No run may lose its job to the sweeper while the members elect a new primary (about 2 s here).
PATIENT = {"STALE_AFTER_S": "8", "WORKER_STALE_S": "8"}


@pytest.fixture(scope="module")
def book() -> bytes:
    return book_pdf(PAGES)


async def _create(stack: Stack, client: httpx.AsyncClient, pdf: bytes, name: str, mode: str):
    """Upload and create a job as a careful client does through an outage: each request again
    after a 503 or a broken connection, the creation under one Idempotency-Key. The ids the API
    acknowledged (file 201, job 202)."""

    async def until_answered(send) -> httpx.Response:
        while True:
            try:
                response = await send()
            except httpx.TransportError:
                response = None
            if response is not None and response.status_code != 503:
                return response
            await asyncio.sleep(0.2)

    uploaded = await until_answered(
        lambda: client.post(
            f"{stack.api_url}/api/v1/files",
            files={"file": (name, pdf, "application/pdf")},
            headers=stack.headers(),
        )
    )
    assert uploaded.status_code == 201, uploaded.text
    file_id = uploaded.json()["file_id"]
    created = await until_answered(
        lambda: client.post(
            f"{stack.api_url}{JOBS}",
            json={"book_id": "book_chaos", "file_id": file_id, "content_mode": mode},
            headers={**stack.headers(), "Idempotency-Key": f"create-{name}"},
        )
    )
    assert created.status_code == 202, created.text
    return file_id, created.json()["job_id"]


def _saw_everything_once(follower: Follower, pages: int) -> None:
    # An id names the job's version, then the pages sent (service/domain/event_ids.py).
    versions = [parse_event_id(event.id or "0").version for event in follower.states]
    assert versions == sorted(set(versions)), versions  # no state twice, none going back
    assert follower.states[-1].data["status"] == "completed"
    seen: set[int] = set()
    for connection in follower.connections:
        numbers = follower.pages(connection)
        assert len(numbers) == len(set(numbers))  # no page twice on one connection
        seen |= set(numbers)
    assert seen == set(range(1, pages + 1))  # and none missed


async def test_primary_killed_mid_job_loses_nothing_and_runs_nothing_twice(
    stack: Stack, book: bytes
):
    await stack.start(members=3, **PATIENT)
    stack.add_worker()
    stack.add_worker()
    async with httpx.AsyncClient(timeout=30) as client:
        _, picture = await _create(stack, client, book_pdf(RENDERED_PAGES), "pictures.pdf", IMAGES)
        ids = [(await _create(stack, client, book, f"book-{n}.pdf", TEXT))[1] for n in range(2)]
    pollers = [asyncio.create_task(stack.poll(job_id)) for job_id in [picture, *ids]]
    followers = [asyncio.create_task(stack.follow(job_id)) for job_id in (picture, ids[0])]
    await stack.until(lambda: stack.mid_job(ids), 90, "jobs mid-way and jobs waiting")

    killed = await stack.kill_primary()
    # Clients go on creating jobs while the members elect a new primary.
    async with httpx.AsyncClient(timeout=30) as client:
        during = [await _create(stack, client, book, "later.pdf", TEXT)]
    await stack.restart_member(killed)
    later = [job_id for _, job_id in during]
    pollers += [asyncio.create_task(stack.poll(job_id)) for job_id in later]
    everything = [picture, *ids, *later]
    await stack.until(lambda: stack.all_finished(everything), 120, "every job to finish")
    await asyncio.wait_for(asyncio.gather(*pollers), 30)
    follows = await asyncio.wait_for(asyncio.gather(*followers), 30)
    expected = dict.fromkeys([*ids, *later], PAGES) | {picture: RENDERED_PAGES}
    verdict = await stack.verify(expected, rendered={picture})

    assert verdict.stuck == [], stack.diagnosis()
    assert verdict.lost == []
    assert verdict.duplicated == []
    assert verdict.unfinished == 0
    assert verdict.bad_answers == {}  # 503 at most while no member was primary
    assert verdict.transport_errors == {}
    assert set(verdict.attempts.values()) == {1}  # the election cost no run its job
    for file_id, _ in during:  # acknowledged uploads are there too
        assert await stack.db["pdf_files.files"].count_documents({"_id": file_id}) == 1
    _saw_everything_once(follows[0], RENDERED_PAGES)
    for follower in follows[1:]:
        _saw_everything_once(follower, PAGES)
