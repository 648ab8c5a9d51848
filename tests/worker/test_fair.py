"""One user cannot stall the others: with user A's two pathological PDFs running on a real
worker (two job slots, two render processes), user B's one-page job completes at once, long
before A's pages could reach their time limit."""

from __future__ import annotations

import asyncio
import itertools

from service.domain import lifecycle
from service.domain.job import utcnow
from tests.support.pdfs import nested_forms_pdf, text_pdf
from tests.support.worker_process import spawn_worker

# Far below what B waited before (A's pages ran until PAGE_TIME_LIMIT_S, 120 s then): a bound
# on a wait for an event, so that a regression fails here instead of hanging the run.
WAIT_LIMIT_S = 45.0


async def _until(predicate, seconds: float = WAIT_LIMIT_S) -> None:
    for _ in range(int(seconds / 0.05)):
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not within {seconds:g} s")


async def test_a_users_two_endless_pdfs_leave_room_for_another_users_page(
    settings, submit, collections
):
    jobs = collections.jobs
    worker = spawn_worker(settings, WORKER_CONCURRENCY="2", RENDER_PROCESSES="2")
    try:
        endless = [await submit(nested_forms_pdf(1), user_id="user-a") for _ in range(2)]

        async def a_renders() -> bool:
            docs = await jobs.find({"user_id": "user-a", "pages_total": 1}).to_list()
            return bool(docs)  # opened, its one page handed to a render process

        await _until(a_renders)
        quick = await submit(text_pdf(1), user_id="user-b")

        async def b_done() -> bool:
            doc = await jobs.find_one({"job_id": quick["job_id"]})
            return doc["status"] in {"completed", "failed"}

        await _until(b_done)
        b = await jobs.find_one({"job_id": quick["job_id"]})
        a = [await jobs.find_one({"job_id": job["job_id"]}) for job in endless]
    finally:
        worker.terminate()
        worker.wait(30)

    assert b["status"] == "completed"
    # A's first job still renders its page (hours of work); the second waits for its turn.
    assert sorted(doc["status"] for doc in a) == ["pending", "processing"]
    assert [doc["attempts"] for doc in a if doc["status"] == "pending"] == [0]


async def test_a_users_jobs_run_one_at_a_time_and_each_starts_when_the_last_ends(
    submit, run_worker, collections
):
    alice = [await submit(text_pdf(2), user_id="alice") for _ in range(3)]
    bob = await submit(text_pdf(1), user_id="bob")

    await run_worker()  # two job slots: alice's second and third wait for her turn

    docs = [await collections.jobs.find_one({"job_id": job["job_id"]}) for job in alice]
    assert all(doc["status"] == "completed" for doc in docs)
    assert [doc["attempts"] for doc in docs] == [1, 1, 1]  # waiting spends no attempt
    runs = sorted((doc["started_at"], doc["completed_at"]) for doc in docs)
    assert all(end <= start for (_, end), (start, _) in itertools.pairwise(runs))
    assert (await collections.jobs.find_one({"job_id": bob["job_id"]}))["status"] == "completed"


async def test_a_claim_that_lost_the_race_for_a_turn_gives_its_job_back_unstarted(
    apply, collections, submit
):
    job = await submit(text_pdf(1))
    claimed = await apply(lifecycle.claim(job["job_id"], "Downloading PDF: a.pdf", utcnow()))

    await apply(
        lifecycle.release(job["job_id"], utcnow(), lease_id=claimed["lease_id"], unclaimed=True)
    )

    doc = await collections.jobs.find_one({"job_id": job["job_id"]})
    assert doc["status"] == "pending"
    assert doc["attempts"] == 0
    assert doc["started_at"] is None
    assert doc["message"] == "PDF chapter creation job enqueued"
    assert doc["lease_id"] is None
