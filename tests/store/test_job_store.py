"""service/store/jobs.py: every transition applied as one atomic, guarded update, on a real
mongod: what each writes, and that a refused one writes nothing."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from service.domain import lifecycle
from service.domain.job import JobStatus, utcnow
from service.domain.lifecycle import Transition, allowed
from service.domain.stages import StageStatus

LEASE = "lease-1"
EVERYTHING = {"_id": 0}


@pytest.fixture
def jobs(collections):
    return collections.jobs


@pytest.fixture
def apply(store):
    """The job store's one writer of job state."""
    return store.jobs.apply


async def _load(jobs, job_id):
    return await jobs.find_one({"job_id": job_id})


async def _claim(apply, job_id, message="m"):
    return await apply(lifecycle.claim(job_id, message, utcnow()), EVERYTHING)


async def _running(job_factory, **fields):
    """A processing job held by LEASE."""
    return await job_factory(
        status=JobStatus.processing, lease_id=LEASE, heartbeat_at=utcnow(), **fields
    )


def _write_for(transition, job, now):
    """The write a legitimate caller would make for ``transition`` on ``job``."""
    long_ago = now - timedelta(hours=1)
    return {
        Transition.claim: lambda: lifecycle.claim(job.job_id, "m", now),
        Transition.advance: lambda: lifecycle.advance(job.job_id, LEASE, 40, "m", now),
        Transition.beat: lambda: lifecycle.beat(job.job_id, LEASE, now),
        Transition.complete: lambda: lifecycle.complete(
            job.job_id, LEASE, {"chapter_id": "c", "total_pages": 1}, "m", now
        ),
        Transition.fail: lambda: lifecycle.fail(job.job_id, LEASE, "bad", "PDF_CORRUPT", now),
        Transition.release: lambda: lifecycle.release(job.job_id, now, lease_id=LEASE),
        Transition.lose: lambda: lifecycle.lose(job.job_id, LEASE, now, "worker lost", now),
        Transition.cancel: lambda: lifecycle.cancel(job.job_id, "alice", now),
        Transition.ring: lambda: lifecycle.ring(job.job_id, long_ago, now),
        Transition.discarded: lambda: lifecycle.discarded(job.job_id, now),
        Transition.indexed: lambda: lifecycle.indexed(job.job_id, StageStatus.processing, 0, now),
        Transition.chapter_deleted: lambda: lifecycle.chapter_deleted(job.job_id, "alice", now),
    }[transition]()


@pytest.mark.parametrize("transition", list(Transition))
@pytest.mark.parametrize("status", list(JobStatus))
async def test_each_transition_applies_exactly_from_the_statuses_the_table_allows(
    apply, jobs, job_factory, transition, status
):
    now = utcnow()
    job = await job_factory(
        status=status, lease_id=LEASE, heartbeat_at=now - timedelta(hours=1),
        rung_at=now - timedelta(hours=1),
    )  # fmt: skip
    before = await _load(jobs, job.job_id)

    applied = await apply(_write_for(transition, job, now))

    after = await _load(jobs, job.job_id)
    if allowed(transition, status):
        assert applied is not None
        assert after["status"] == lifecycle.leads_to(transition, status).value
    else:
        assert applied is None
        assert after == before  # a refused transition writes nothing at all


@pytest.mark.parametrize(
    "make",
    [
        lambda j, now: lifecycle.advance(j, "another-lease", 40, "m", now),
        lambda j, now: lifecycle.beat(j, "another-lease", now),
        lambda j, now: lifecycle.complete(
            j, "another-lease", {"chapter_id": "c", "total_pages": 1}, "m", now
        ),
        lambda j, now: lifecycle.fail(j, "another-lease", "bad", "PDF_CORRUPT", now),
        lambda j, now: lifecycle.release(j, now, lease_id="another-lease"),
    ],
)
async def test_a_run_whose_lease_is_gone_writes_nothing(apply, jobs, job_factory, make):
    job = await _running(job_factory, progress=50)
    before = await _load(jobs, job.job_id)

    applied = await apply(make(job.job_id, utcnow()))

    assert applied is None
    assert await _load(jobs, job.job_id) == before


async def test_the_sweeper_cannot_release_a_job_whose_heartbeat_is_fresh(apply, jobs, job_factory):
    job = await _running(job_factory)
    stale_before = utcnow() - timedelta(seconds=60)

    released = await apply(
        lifecycle.release(job.job_id, utcnow(), lease_id=LEASE, stale_before=stale_before)
    )
    lost = await apply(lifecycle.lose(job.job_id, LEASE, stale_before, "worker lost", utcnow()))

    assert released is None
    assert lost is None
    assert (await _load(jobs, job.job_id))["status"] == "processing"


async def test_the_sweeper_releases_a_stale_lease_and_closes_it(apply, jobs, job_factory):
    job = await job_factory(
        status=JobStatus.processing, lease_id=LEASE, heartbeat_at=utcnow() - timedelta(minutes=5)
    )

    released = await apply(
        lifecycle.release(
            job.job_id, utcnow(), lease_id=LEASE, stale_before=utcnow() - timedelta(seconds=60)
        ),
        EVERYTHING,
    )

    assert released["status"] == "pending"
    assert released["lease_id"] is None


async def test_only_the_owner_can_cancel(apply, jobs, job_factory):
    job = await job_factory(user_id="alice")

    by_bob = await apply(lifecycle.cancel(job.job_id, "bob", utcnow()))
    by_alice = await apply(lifecycle.cancel(job.job_id, "alice", utcnow()))

    assert by_bob is None
    assert by_alice["status"] == "cancelled"


async def test_claim_moves_pending_to_processing_once_with_a_lease(apply, jobs, job_factory):
    job = await job_factory()

    first = await _claim(apply, job.job_id)
    second = await _claim(apply, job.job_id)

    assert first["status"] == "processing"
    assert first["attempts"] == 1
    assert first["version"] == 2
    assert first["started_at"] is not None
    assert first["lease_id"]
    assert first["chapter_id"]
    assert second is None


async def test_the_chapter_id_is_fixed_at_the_first_claim(apply, jobs, job_factory):
    job = await job_factory()
    first = await _claim(apply, job.job_id)
    await apply(lifecycle.release(job.job_id, utcnow(), lease_id=first["lease_id"]))

    second = await _claim(apply, job.job_id)

    assert second["chapter_id"] == first["chapter_id"]
    assert second["lease_id"] != first["lease_id"]


async def test_concurrent_claims_have_exactly_one_winner(apply, jobs, job_factory):
    job = await job_factory()

    results = await asyncio.gather(*(_claim(apply, job.job_id) for _ in range(20)))

    assert sum(result is not None for result in results) == 1
    assert (await _load(jobs, job.job_id))["attempts"] == 1


async def test_advance_never_moves_progress_backwards(apply, jobs, job_factory):
    job = await _running(job_factory, progress=50)

    applied = await apply(
        lifecycle.advance(job.job_id, LEASE, 40, "Processed 1/10 pages...", utcnow())
    )

    doc = await _load(jobs, job.job_id)
    assert applied is not None
    assert doc["progress"] == 50
    assert doc["version"] == 1


async def test_advance_on_a_cancelled_job_writes_nothing(apply, jobs, job_factory):
    job = await job_factory(status=JobStatus.cancelled, progress=30, lease_id=LEASE)

    applied = await apply(
        lifecycle.advance(job.job_id, LEASE, 40, "Processed 4/10 pages...", utcnow())
    )

    doc = await _load(jobs, job.job_id)
    assert applied is None
    assert (doc["status"], doc["progress"], doc["version"]) == ("cancelled", 30, 1)


async def test_complete_sets_result_and_completed_at(apply, jobs, job_factory):
    job = await _running(job_factory, progress=70)

    done = await apply(
        lifecycle.complete(
            job.job_id, LEASE, {"chapter_id": "c1", "total_pages": 3},
            "Chapter created successfully with 3 pages", utcnow(),
        )
    )  # fmt: skip

    doc = await _load(jobs, job.job_id)
    assert done is not None
    assert doc["status"] == "completed"
    assert doc["progress"] == 100
    assert doc["result"] == {"chapter_id": "c1", "total_pages": 3}
    assert doc["completed_at"] == doc["updated_at"]
    assert doc["version"] == 2


async def test_fail_keeps_progress_and_records_the_reason(apply, jobs, job_factory):
    job = await _running(job_factory, progress=35)

    failed = await apply(
        lifecycle.fail(job.job_id, LEASE, "Out of memory", "OUT_OF_MEMORY", utcnow())
    )

    doc = await _load(jobs, job.job_id)
    assert failed is not None
    assert doc["status"] == "failed"
    assert doc["progress"] == 35
    assert doc["message"] == "PDF processing failed: Out of memory"
    assert doc["error"] == "Out of memory"
    assert doc["error_code"] == "OUT_OF_MEMORY"
    assert doc["failed_at"] == doc["updated_at"]


def _stage_statuses(doc):
    return {name: state["status"] for name, state in doc["stages"].items()}


async def test_claim_starts_the_stages_over_with_the_download(apply, jobs, job_factory):
    job = await job_factory()

    claimed = await _claim(apply, job.job_id)

    assert _stage_statuses(claimed) == {
        "download_pdf": "processing", "extract_pages": "pending", "create_chapter": "pending", "index_vectors": "pending",
    }  # fmt: skip
    assert claimed["stages"]["download_pdf"]["started_at"] == claimed["started_at"]


async def test_fail_marks_the_running_stage_failed_and_later_ones_skipped(apply, jobs, job_factory):
    job = await job_factory()
    lease = (await _claim(apply, job.job_id))["lease_id"]
    await apply(
        lifecycle.advance(
            job.job_id, lease, 10, "m", utcnow(), {"stages.download_pdf.status": "completed"}
        )
    )
    await apply(
        lifecycle.advance(
            job.job_id, lease, 20, "m", utcnow(), {"stages.extract_pages.status": "processing"}
        )
    )

    await apply(
        lifecycle.fail(job.job_id, lease, "$status is not a field path", "PDF_CORRUPT", utcnow())
    )

    doc = await _load(jobs, job.job_id)
    assert _stage_statuses(doc) == {
        "download_pdf": "completed", "extract_pages": "failed", "create_chapter": "skipped", "index_vectors": "skipped",
    }  # fmt: skip
    assert doc["stages"]["extract_pages"]["finished_at"] == doc["failed_at"]
    # Strings are stored as given, never read as field paths of the update pipeline.
    assert doc["error"] == "$status is not a field path"
    assert doc["message"] == "PDF processing failed: $status is not a field path"
    assert doc["error_code"] == "PDF_CORRUPT"


async def test_release_puts_the_running_stage_back_to_pending(apply, jobs, job_factory):
    job = await job_factory()
    lease = (await _claim(apply, job.job_id))["lease_id"]

    released = await apply(lifecycle.release(job.job_id, utcnow(), lease_id=lease))

    doc = await _load(jobs, job.job_id)
    assert released is not None
    assert doc["status"] == "pending"
    assert doc["lease_id"] is None
    assert set(_stage_statuses(doc).values()) == {"pending"}


async def test_page_errors_are_stamped_and_not_listed_twice(apply, jobs, job_factory):
    job = await job_factory()
    lease = (await _claim(apply, job.job_id))["lease_id"]

    await apply(
        lifecycle.advance(
            job.job_id,
            lease,
            30,
            "m",
            utcnow(),
            page_errors=[{"page_number": 2, "error": "bad font"}],
        )
    )
    await apply(
        lifecycle.advance(
            job.job_id, lease, 31, "m", utcnow(),
            page_errors=[{"page_number": 2, "error": "bad font"}, {"page_number": 5, "error": "bad image"}],
        )
    )  # fmt: skip

    doc = await _load(jobs, job.job_id)
    assert [(e["page_number"], e["error"]) for e in doc["page_errors"]] == [
        (2, "bad font"), (5, "bad image"),
    ]  # fmt: skip
    assert all(e["timestamp"] is not None for e in doc["page_errors"])
    assert doc["version"] == 4


async def test_resumed_job_records_its_stages_while_progress_stays_ahead(apply, jobs, job_factory):
    job = await job_factory()
    lease = (await _claim(apply, job.job_id))["lease_id"]
    await apply(
        lifecycle.advance(
            job.job_id, lease, 55, "Processed 50/100 pages...", utcnow(), {"pages_processed": 50}
        )
    )
    await apply(lifecycle.release(job.job_id, utcnow(), lease_id=lease))
    lease = (await _claim(apply, job.job_id, "Downloading PDF: a.pdf"))["lease_id"]

    applied = await apply(
        lifecycle.advance(
            job.job_id, lease, 10, "Downloading PDF: a.pdf", utcnow(),
            {"stages.download_pdf.status": "completed", "stages.download_pdf.percent": 100},
        )
    )  # fmt: skip

    doc = await _load(jobs, job.job_id)
    assert applied is not None
    assert doc["progress"] == 55  # never backwards for the polling client
    assert doc["message"] == "Processed 50/100 pages..."  # and its message with it
    assert doc["stages"]["download_pdf"]["status"] == "completed"  # this attempt's stage
    assert doc["stages"]["download_pdf"]["percent"] == 100
    assert doc["attempts"] == 2

    await apply(lifecycle.advance(job.job_id, lease, 60, "Processed 60/100 pages...", utcnow()))

    doc = await _load(jobs, job.job_id)
    assert (doc["progress"], doc["message"]) == (60, "Processed 60/100 pages...")


async def test_pages_processed_and_its_count_never_go_back_at_the_same_percentage(
    apply, jobs, job_factory
):
    job = await job_factory()
    lease = (await _claim(apply, job.job_id))["lease_id"]
    await apply(
        lifecycle.advance(
            job.job_id, lease, 30, "Processed 14/6000 pages...", utcnow(), pages_processed=14
        )
    )
    await apply(lifecycle.release(job.job_id, utcnow(), lease_id=lease))
    lease = (await _claim(apply, job.job_id))["lease_id"]

    # A run that stored fewer pages (same 30 %): its count would be a step back.
    await apply(
        lifecycle.advance(
            job.job_id, lease, 30, "Processed 10/6000 pages...", utcnow(), pages_processed=10
        )
    )
    behind = await _load(jobs, job.job_id)
    await apply(
        lifecycle.advance(
            job.job_id, lease, 30, "Processed 15/6000 pages...", utcnow(), pages_processed=15
        )
    )
    ahead = await _load(jobs, job.job_id)

    assert (behind["message"], behind["pages_processed"]) == ("Processed 14/6000 pages...", 14)
    assert (ahead["message"], ahead["pages_processed"]) == ("Processed 15/6000 pages...", 15)


async def test_ending_a_job_stored_before_stages_existed_fills_them_in(apply, jobs, job_factory):
    job = await _running(job_factory)
    await jobs.update_one({"job_id": job.job_id}, {"$unset": {"stages": ""}})

    await apply(lifecycle.fail(job.job_id, LEASE, "worker lost", "WORKER_LOST", utcnow()))

    doc = await _load(jobs, job.job_id)
    assert _stage_statuses(doc) == {
        "download_pdf": "skipped", "extract_pages": "skipped", "create_chapter": "skipped", "index_vectors": "skipped",
    }  # fmt: skip


async def test_page_errors_list_the_first_few_and_count_every_page_once(apply, jobs, job_factory):
    job = await job_factory()
    lease = (await _claim(apply, job.job_id))["lease_id"]
    long_error = "x" * 10_000
    batches = [range(start, start + 64) for start in range(1, 1_001, 64)]

    for _ in range(2):  # a retried run reports every page again
        for batch in batches:
            errors = [{"page_number": n, "error": long_error} for n in batch if n <= 1_000]
            await apply(lifecycle.advance(job.job_id, lease, 50, "m", utcnow(), page_errors=errors))

    doc = await _load(jobs, job.job_id)
    assert [e["page_number"] for e in doc["page_errors"]] == list(range(1, 11))
    assert all(len(e["error"]) == lifecycle.PAGE_ERROR_CHARS for e in doc["page_errors"])
    assert doc["page_errors_total"] == 1_000
