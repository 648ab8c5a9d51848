"""service/domain/indexing.py: a chapter's index state, pure."""

from __future__ import annotations

from datetime import UTC, datetime

from service.domain import indexing
from service.domain.indexing import SearchStatus, public_status

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def test_every_write_of_a_run_is_guarded_by_its_lease_and_status():
    writes = [
        indexing.progress("c", "L", 10, 5, NOW),
        indexing.ready("c", "L", "model:1", 10, NOW),
        indexing.fail("c", "L", "why", NOW),
        indexing.release("c", "L"),
    ]

    for write in writes:
        assert write.filter == {
            "chapter_id": "c",
            "search.status": "indexing",
            "search.lease_id": "L",
        }


def test_a_claim_opens_a_new_lease_and_counts_an_attempt():
    first, second = indexing.claim(NOW), indexing.claim(NOW)

    assert first.filter == {"search.status": "pending"}
    assert first.lease_id
    assert first.lease_id != second.lease_id
    assert first.update["$set"]["search.lease_id"] == first.lease_id
    assert first.update["$inc"] == {"search.attempts": 1}


def test_the_sweeper_releases_only_a_stale_lease():
    write = indexing.release("c", "L", stale_before=NOW)

    assert write.filter["search.heartbeat_at"] == {"$lt": NOW}
    assert write.update["$set"] == {"search.status": "pending", "search.lease_id": None}


def test_a_request_leaves_a_chapter_being_indexed_alone():
    write = indexing.request({"user_id": "alice"}, NOW)

    assert write.filter == {"user_id": "alice", "search.status": {"$ne": "indexing"}}
    assert write.update["$set"]["search.status"] == "pending"


def test_what_a_client_is_told():
    assert public_status(None, "m:1") is SearchStatus.pending
    assert public_status({"status": "ready", "model": "m:1"}, "m:1") is SearchStatus.ready
    assert public_status({"status": "ready", "model": "old:0"}, "m:1") is SearchStatus.stale
    assert public_status({"status": "failed"}, "m:1") is SearchStatus.failed
    assert public_status({"status": "indexing"}, "m:1") is SearchStatus.indexing
