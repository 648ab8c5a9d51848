"""Coalesced polling reads (service/store/reader.py) on the real mongod: each caller gets its own job,
never a staler one than its own find_one would have read, and errors reach every caller."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from pymongo.errors import ServerSelectionTimeoutError

from devstack.embedded import free_port
from service.api.routes.metrics import JOB_READS
from service.api.schemas.jobs import JOB_STATUS_FIELDS
from service.domain.errors import DependencyUnavailable
from service.logs import current_request_id
from service.store.reader import JobReader

URL = "/api/v1/books/jobs/{}"


def within(awaitable: Any) -> Any:
    """A reader bug that loses a caller must fail the test, not hang it."""
    return asyncio.wait_for(awaitable, timeout=10)


# The session app's jobs collection, set by the autouse fixture below: HeldQueries stands in for
# it where the reader looks it up.
_JOBS: list[Any] = []


@pytest.fixture(autouse=True)
def _jobs_collection(collections):
    _JOBS[:] = [collections.jobs]


def jobs_collection() -> Any:
    return _JOBS[0]


class HeldQueries:
    """The real collection, except that each query, once MongoDB has answered, waits for
    ``release`` before handing its documents back: a query is kept in flight on purpose."""

    def __init__(self) -> None:
        self.answered = asyncio.Event()
        self.release = asyncio.Event()
        self.fail_with: Exception | None = None  # raised, once released, instead of answering
        self.queries: list[Any] = []
        self.request_ids: list[str | None] = []  # the log context each query ran in

    async def _hold(self) -> None:
        self.answered.set()
        await self.release.wait()
        if self.fail_with is not None:
            raise self.fail_with

    async def find_one(self, query: dict[str, Any], projection: dict[str, int]) -> Any:
        self.queries.append(query)
        self.request_ids.append(current_request_id.get())
        doc = await jobs_collection().find_one(query, projection)
        await self._hold()
        return doc

    def find(self, query: dict[str, Any], projection: dict[str, int]) -> Any:
        self.queries.append(query)
        self.request_ids.append(current_request_id.get())
        held = self

        class Cursor:
            async def to_list(self, length: int | None) -> list[Any]:
                docs = await jobs_collection().find(query, projection).to_list(length)
                await held._hold()
                return docs

        return Cursor()


async def test_concurrent_reads_go_out_as_one_query(app, job_factory):
    jobs = [await job_factory(user_id=f"user-{i % 3}", progress=i) for i in range(40)]
    reader = JobReader(jobs_collection, JOB_STATUS_FIELDS)
    ids = [job.job_id for job in jobs]
    unknown = "00000000-0000-4000-8000-000000000000"

    # Every read starts in the same turn of the loop: they travel together, duplicates included.
    docs = await within(
        asyncio.gather(*(reader.read(job_id) for job_id in [*ids, ids[0], unknown]))
    )

    assert [doc["job_id"] for doc in docs[:40]] == ids
    assert [doc["progress"] for doc in docs[:40]] == list(range(40))
    assert [doc["user_id"] for doc in docs[:3]] == ["user-0", "user-1", "user-2"]
    assert docs[40] == docs[0]
    assert docs[41] is None
    assert (reader.counts.reads, reader.counts.queries) == (42, 1)
    projected = {field for field, wanted in JOB_STATUS_FIELDS.items() if wanted}
    assert {"job_id", "user_id", "status", "progress"} <= set(docs[0]) <= projected


async def test_batches_are_capped_and_each_read_is_answered(app, job_factory):
    jobs = [await job_factory(progress=i) for i in range(30)]
    reader = JobReader(jobs_collection, JOB_STATUS_FIELDS, max_batch=8, max_in_flight=1)

    docs = await within(asyncio.gather(*(reader.read(job.job_id) for job in jobs)))

    assert [doc["progress"] for doc in docs] == list(range(30))
    assert reader.counts.queries == 4  # 8 + 8 + 8 + 6, one query at a time


async def test_without_batching_each_read_is_its_own_query(app, job_factory):
    jobs = [await job_factory(progress=i) for i in range(5)]
    reader = JobReader(jobs_collection, JOB_STATUS_FIELDS, max_batch=1, max_in_flight=1)

    # The same job twice, and more reads at once than max_in_flight: none waits for another.
    ids = [jobs[0].job_id] + [job.job_id for job in jobs]
    docs = await within(asyncio.gather(*(reader.read(job_id) for job_id in ids)))

    assert [doc["progress"] for doc in docs] == [0, 0, 1, 2, 3, 4]
    assert (reader.counts.reads, reader.counts.queries) == (6, 6)


async def test_a_read_never_joins_a_query_already_sent(app, job_factory):
    job = await job_factory(progress=10)
    held = HeldQueries()
    reader = JobReader(lambda: held, JOB_STATUS_FIELDS, max_in_flight=1)

    first = asyncio.create_task(reader.read(job.job_id))
    await held.answered.wait()  # MongoDB has answered the first query; it is still in flight
    await jobs_collection().update_one({"job_id": job.job_id}, {"$set": {"progress": 55}})
    second = asyncio.create_task(reader.read(job.job_id))
    await asyncio.sleep(0.05)
    held.answered.clear()
    held.release.set()

    assert (await within(first))["progress"] == 10
    assert (await within(second))["progress"] == 55  # its own query, sent after the write
    assert len(held.queries) == 2


async def test_a_failed_query_fails_each_of_its_reads_and_the_next_one_works(app, job_factory):
    job = await job_factory()
    dead: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        f"mongodb://127.0.0.1:{free_port()}/?directConnection=true",
        serverSelectionTimeoutMS=200,
    )
    collections = [dead["pcj_test"]["pdf_chapter_jobs"]]
    reader = JobReader(lambda: collections[0], JOB_STATUS_FIELDS, max_in_flight=1)
    try:
        failed = await within(
            asyncio.gather(*(reader.read(job.job_id) for _ in range(5)), return_exceptions=True)
        )
        collections[0] = jobs_collection()  # MongoDB is back
        recovered = await within(reader.read(job.job_id))
    finally:
        await dead.close()

    assert [type(result) for result in failed] == [ServerSelectionTimeoutError] * 5
    assert len({id(result) for result in failed}) == 5  # each caller raises its own
    assert recovered is not None
    assert recovered["job_id"] == job.job_id


async def test_a_caller_that_goes_away_leaves_the_others_answered(app, job_factory):
    gone, staying = await job_factory(), await job_factory()
    held = HeldQueries()
    reader = JobReader(lambda: held, JOB_STATUS_FIELDS)

    cancelled = asyncio.create_task(reader.read(gone.job_id))
    answered = asyncio.create_task(reader.read(staying.job_id))
    await held.answered.wait()
    cancelled.cancel()
    held.release.set()

    assert (await within(answered))["job_id"] == staying.job_id
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert (await within(reader.read(gone.job_id)))["job_id"] == gone.job_id  # still serving


async def test_closing_fails_what_is_waiting_or_running_with_503(app, job_factory):
    job = await job_factory()
    held = HeldQueries()
    # A deadline beyond within()'s: only closing itself may answer these reads.
    reader = JobReader(lambda: held, JOB_STATUS_FIELDS, max_in_flight=1, timeout_s=60)

    running = asyncio.create_task(reader.read(job.job_id))
    await held.answered.wait()
    waiting = asyncio.create_task(reader.read(job.job_id))
    await asyncio.sleep(0)
    await within(reader.aclose())

    for task in (running, waiting):
        with pytest.raises(DependencyUnavailable):
            await within(task)
    with pytest.raises(DependencyUnavailable):
        await reader.read(job.job_id)


async def test_closing_before_a_query_starts_still_answers_its_reads(app, job_factory):
    job = await job_factory()
    reader = JobReader(jobs_collection, JOB_STATUS_FIELDS, timeout_s=60)

    reading = asyncio.create_task(reader.read(job.job_id))
    await asyncio.sleep(0)  # the read has run and asked for a flush, which runs next...
    closing = asyncio.create_task(reader.aclose())  # ...then this, before the query's first step
    await within(closing)

    with pytest.raises(DependencyUnavailable):
        await within(reading)
    assert reader.counts.queries == 0  # cancelled before it ever ran


async def test_a_read_queued_too_long_is_a_503_and_the_reader_recovers(app, job_factory):
    first, second = await job_factory(), await job_factory()
    held = HeldQueries()
    reader = JobReader(lambda: held, JOB_STATUS_FIELDS, max_in_flight=1, timeout_s=0.3)

    stuck = asyncio.create_task(reader.read(first.job_id))
    await held.answered.wait()
    queued = asyncio.create_task(reader.read(second.job_id))
    results = await within(asyncio.gather(stuck, queued, return_exceptions=True))
    held.release.set()
    await asyncio.sleep(0.05)  # the stuck query returns to nobody
    later = await within(reader.read(second.job_id))

    assert [type(result) for result in results] == [DependencyUnavailable] * 2
    assert results[0].status_code == 503
    assert later is not None
    assert later["job_id"] == second.job_id
    assert len(held.queries) == 2  # the timed-out read of the second job was never sent


async def test_queries_run_outside_the_callers_log_context(app, job_factory):
    jobs = [await job_factory(), await job_factory()]
    held = HeldQueries()
    held.release.set()
    reader = JobReader(lambda: held, JOB_STATUS_FIELDS, max_in_flight=1)

    async def poll(job_id: str, request_id: str) -> Any:
        current_request_id.set(request_id)
        return await reader.read(job_id)

    await within(asyncio.gather(poll(jobs[0].job_id, "req-a"), poll(jobs[1].job_id, "req-b")))
    first = asyncio.create_task(poll(jobs[0].job_id, "req-c"))
    await first
    await within(poll(jobs[1].job_id, "req-d"))

    assert held.request_ids == [None, None, None]  # a shared query is no one request's


async def test_a_failed_query_skips_callers_gone_and_fails_the_rest(app, job_factory):
    gone, staying = await job_factory(), await job_factory()
    held = HeldQueries()
    reader = JobReader(lambda: held, JOB_STATUS_FIELDS)

    cancelled = asyncio.create_task(reader.read(gone.job_id))
    failing = asyncio.create_task(reader.read(staying.job_id))
    await held.answered.wait()
    cancelled.cancel()
    held.fail_with = ServerSelectionTimeoutError("no primary")
    held.release.set()

    with pytest.raises(ServerSelectionTimeoutError):
        await within(failing)
    with pytest.raises(asyncio.CancelledError):
        await cancelled


async def test_concurrent_polls_over_http_each_get_their_own_answer(
    client, job_factory, auth_headers
):
    jobs = [await job_factory(user_id=f"user-{i % 3}", progress=i) for i in range(30)]
    headers = {user: auth_headers(user) for user in ("user-0", "user-1", "user-2")}
    for user, user_headers in headers.items():  # tokens verified once, then served from cache
        await client.get(URL.format(jobs[int(user[-1])].job_id), headers=user_headers)
    reads, queries = JOB_READS.reads, JOB_READS.queries

    answers = await within(
        asyncio.gather(
            *(client.get(URL.format(job.job_id), headers=headers[job.user_id]) for job in jobs),
            client.get(URL.format(jobs[0].job_id), headers=headers["user-1"]),  # not the owner
            client.get(
                URL.format("00000000-0000-4000-8000-000000000000"), headers=headers["user-0"]
            ),
            client.get(URL.format("not-a-uuid"), headers=headers["user-0"]),
        )
    )

    assert [answer.status_code for answer in answers] == [200] * 30 + [403, 404, 404]
    assert [answer.json()["job_id"] for answer in answers[:30]] == [job.job_id for job in jobs]
    assert [answer.json()["progress"] for answer in answers[:30]] == list(range(30))
    assert answers[30].json() == {"detail": "Access denied to this job"}
    assert JOB_READS.reads - reads == 32  # the malformed id never reaches MongoDB
    assert JOB_READS.queries - queries < 32 // 2


async def test_a_coalesced_query_is_answered_from_the_job_id_index(app, job_factory):
    jobs = [await job_factory() for _ in range(20)]
    held = HeldQueries()
    held.release.set()
    reader = JobReader(lambda: held, JOB_STATUS_FIELDS)
    await within(asyncio.gather(*(reader.read(job.job_id) for job in jobs[:5])))

    (sent,) = held.queries  # the filter the reader sent, explained
    explained = await jobs_collection().find(sent, JOB_STATUS_FIELDS).explain()

    stats = explained["executionStats"]
    assert (stats["nReturned"], stats["totalDocsExamined"]) == (5, 5)  # not a scan of the 20
    assert stats["totalKeysExamined"] <= 2 * 5  # a seek per id, and the key after it
    assert "job_id_unique" in str(explained["queryPlanner"]["winningPlan"])


@pytest.mark.parametrize(
    ("url", "id_field", "not_found"),
    [
        ("/api/v1/jobs/{}", "id", "Job {} not found"),  # seeds 000 and 003
        ("/api/v1/ingestion/job/{}", "job_id", "Job not found"),  # seed 001
    ],
)
async def test_the_other_seeds_polls_share_queries_too(
    client, job_factory, auth_headers, url, id_field, not_found
):
    jobs = [await job_factory(user_id="alice", progress=i) for i in range(8)]
    someone_elses = await job_factory(user_id="bob")
    headers = auth_headers("alice")
    await client.get(url.format(jobs[0].job_id), headers=headers)  # token verified and cached
    queries = JOB_READS.queries

    answers = await within(
        asyncio.gather(
            *(client.get(url.format(job.job_id), headers=headers) for job in jobs),
            client.get(url.format(someone_elses.job_id), headers=headers),
        )
    )

    assert [answer.status_code for answer in answers] == [200] * 8 + [404]
    assert [answer.json()[id_field] for answer in answers[:8]] == [job.job_id for job in jobs]
    assert answers[8].json() == {"detail": not_found.format(someone_elses.job_id)}
    assert JOB_READS.queries - queries <= 2  # 9 polls
