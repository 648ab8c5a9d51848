"""The transition table, pure: every allowed and every refused transition, and what each writes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from service.domain import job, lifecycle
from service.domain.job import JobStatus
from service.domain.lifecycle import RULES, Guard, Transition, allowed, leads_to
from service.domain.stages import StageStatus

P, R, C, F, X = "pending", "processing", "completed", "failed", "cancelled"

# From each status, the transitions that may leave it, and where they lead. Spelled out here,
# independently of the table, so that a change to the table has to change this too.
EXPECTED: dict[Transition, dict[str, str]] = {
    Transition.claim: {P: R},
    Transition.advance: {R: R},
    Transition.beat: {R: R},
    Transition.complete: {R: C},
    Transition.fail: {R: F},
    Transition.release: {R: P},
    Transition.lose: {R: F},
    Transition.cancel: {P: X, R: X},
    Transition.ring: {P: P},
    Transition.discarded: {F: F, X: X},
    Transition.indexed: {C: C},
    Transition.chapter_deleted: {C: C},
}
NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("transition", list(Transition))
@pytest.mark.parametrize("status", list(JobStatus))
def test_every_transition_is_allowed_exactly_from_its_sources(transition, status):
    expected = EXPECTED[transition].get(status.value)

    assert allowed(transition, status) is (expected is not None)
    if expected is not None:
        assert leads_to(transition, status).value == expected


@pytest.mark.parametrize("status", [JobStatus.completed, JobStatus.failed, JobStatus.cancelled])
def test_terminal_statuses_have_no_way_out(status):
    assert {leads_to(t, status) for t in Transition if allowed(t, status)} <= {status}


def test_every_write_of_a_run_is_guarded_by_its_lease():
    run_writes = [
        lifecycle.advance("j", "L", 40, "m", NOW),
        lifecycle.beat("j", "L", NOW),
        lifecycle.complete("j", "L", {"chapter_id": "c", "total_pages": 1}, "m", NOW),
        lifecycle.fail("j", "L", "bad", "PDF_CORRUPT", NOW),
        lifecycle.release("j", NOW, lease_id="L"),
    ]

    for write in run_writes:
        assert RULES[write.transition].guard is Guard.lease
        assert write.filter["lease_id"] == "L", write.transition


def test_the_sweeper_writes_only_while_the_lease_it_saw_is_still_stale():
    stale_before = datetime(2026, 11, 29, 11, 59, tzinfo=UTC)

    for write in (
        lifecycle.release("j", NOW, lease_id="L", stale_before=stale_before),
        lifecycle.lose("j", "L", stale_before, "worker lost", NOW),
    ):
        assert write.filter["lease_id"] == "L"
        assert write.filter["heartbeat_at"] == {"$lt": stale_before}
        assert write.filter["status"] == "processing"


def test_a_claim_opens_a_new_lease_each_time():
    first, second = lifecycle.claim("j", "m", NOW), lifecycle.claim("j", "m", NOW)

    assert first.lease_id
    assert second.lease_id
    assert first.lease_id != second.lease_id
    assert first.pipeline[0]["$set"]["lease_id"] == first.lease_id
    assert first.filter == {"job_id": "j", "status": "pending"}


def test_releasing_and_losing_close_the_lease_but_cancelling_keeps_it():
    released = lifecycle.release("j", NOW, lease_id="L")
    lost = lifecycle.lose("j", "L", NOW, "worker lost", NOW)
    cancelled = lifecycle.cancel("j", "alice", NOW)

    assert released.pipeline[0]["$set"]["lease_id"] is None
    assert lost.pipeline[0]["$set"]["lease_id"] is None
    assert "lease_id" not in cancelled.pipeline[0]["$set"]
    assert cancelled.filter == {
        "job_id": "j", "status": {"$in": ["pending", "processing"]}, "user_id": "alice",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("write", "bumps"),
    [
        (lifecycle.claim("j", "m", NOW), True),
        (lifecycle.complete("j", "L", {}, "m", NOW), True),
        (lifecycle.fail("j", "L", "r", "c", NOW), True),
        (lifecycle.release("j", NOW, lease_id="L"), True),
        (lifecycle.cancel("j", "u", NOW), True),
        (lifecycle.beat("j", "L", NOW), False),
        (lifecycle.ring("j", NOW, NOW), False),
    ],
)
def test_version_is_bumped_one_way_by_every_visible_write(write, bumps):
    fields = write.pipeline[0]["$set"]

    if bumps:
        assert fields["version"] == lifecycle.NEXT_VERSION
        assert fields["updated_at"] == NOW
    else:
        assert "version" not in fields
        assert "updated_at" not in fields


def test_an_advance_that_is_behind_keeps_the_version_unless_it_carries_fields():
    plain = lifecycle.advance("j", "L", 40, "m", NOW).pipeline[0]["$set"]["version"]
    with_fields = lifecycle.advance("j", "L", 40, "m", NOW, {"pages_processed": 3})

    assert plain["$cond"][1] == lifecycle.NEXT_VERSION  # bumped only when not behind
    assert with_fields.pipeline[0]["$set"]["version"] == lifecycle.NEXT_VERSION


def test_user_strings_are_literals_never_field_paths():
    write = lifecycle.fail("j", "L", "$status", "PDF_CORRUPT", NOW)

    assert write.pipeline[0]["$set"]["error"] == {"$literal": "$status"}


@pytest.mark.parametrize(
    ("phase", "expected"),
    [
        (job.downloading("a.pdf"), (10, "Downloading PDF: a.pdf")),
        (job.extracting(0, 10), (30, "Processed 0/10 pages...")),
        (job.extracting(5, 10), (50, "Processed 5/10 pages...")),
        (job.extracting(10, 10), (70, "Processed 10/10 pages...")),
        (job.creating_chapter(283), (70, "Processed 283 pages. Creating chapter...")),
        (job.chapter_created(283), (100, "Chapter created successfully with 283 pages")),
        (job.chapter_created(1), (100, "Chapter created successfully with 1 page")),
    ],
)
def test_seed_002_phases(phase, expected):
    assert phase == expected


def test_the_index_stage_of_a_completed_job_moves_without_changing_its_version():
    started = lifecycle.indexed("j", StageStatus.processing, 0, NOW)
    halfway = lifecycle.indexed("j", StageStatus.processing, 50, NOW)
    done = lifecycle.indexed("j", StageStatus.completed, 100, NOW)

    assert started.filter == {"job_id": "j", "status": "completed"}
    assert RULES[Transition.indexed].visible is False  # pollers' ETags stay
    assert "version" not in started.pipeline[0]["$set"]
    assert started.pipeline[0]["$set"]["stages.index_vectors.started_at"] == {"$literal": NOW}
    assert "stages.index_vectors.started_at" not in halfway.pipeline[0]["$set"]
    assert halfway.pipeline[0]["$set"]["stages.index_vectors.percent"] == {"$literal": 50}
    assert done.pipeline[0]["$set"]["stages.index_vectors.finished_at"] == {"$literal": NOW}


def test_a_deleted_chapter_is_a_new_version_of_its_completed_job_by_its_owner_only():
    write = lifecycle.chapter_deleted("j", "alice", NOW)

    assert write.filter == {"job_id": "j", "status": "completed", "user_id": "alice"}
    assert RULES[Transition.chapter_deleted].visible is True  # pollers see it: a new ETag
    assert write.pipeline[0]["$set"]["chapter_deleted_at"] == NOW
    assert "status" not in write.pipeline[0]["$set"]
