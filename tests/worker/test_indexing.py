"""A chapter becomes searchable after it is ready: its pages into retrieval chunks with vectors,
by a worker's indexer, on the real mongod and a real embedding process."""

from __future__ import annotations

import asyncio
import os
import signal
from datetime import timedelta

import numpy as np
import pytest
from bson.binary import Binary

from service.domain import indexing
from service.domain.job import utcnow
from service.domain.page_keys import chapter_prefix, passages_key
from service.retrieval.layout import normalize
from service.retrieval.terms import ANALYZER, TERM, term_id, term_vector
from service.store.chapters import StoredPage
from service.store.usage import Holding
from tests.support.pdfs import TOPICS, text_pdf, topics_pdf
from worker.reindex import reindex
from worker.sweeper import sweep

CHAPTERS = "/api/v1/books/book_1/chapters"


async def _chapter(client, auth_headers, job):
    chapter_id = (
        await client.get(f"/api/v1/books/jobs/{job['job_id']}", headers=auth_headers("alice"))
    ).json()["result"]["chapter_id"]
    response = await client.get(f"{CHAPTERS}/{chapter_id}", headers=auth_headers("alice"))
    assert response.status_code == 200, response.text
    return response.json()


async def test_a_chapter_is_ready_before_its_index_and_searchable_after(
    collections, client, auth_headers, submit, run_worker, index_chapters
):
    job = await submit(topics_pdf())
    await run_worker()

    before = await _chapter(client, auth_headers, job)
    indexed = await index_chapters()
    after = await _chapter(client, auth_headers, job)

    assert before["search_status"] == "pending"  # readable at once, indexed later
    assert indexed == 1
    assert after["search_status"] == "ready"
    assert after["outline"] == [
        {"level": 1, "title": heading, "page": n} for n, heading in enumerate(TOPICS, start=1)
    ]
    stored = await collections.chapters.find_one({"chapter_id": after["chapter_id"]})
    assert stored["search"]["chunks"] == stored["search"]["embedded"] > 0


async def test_chunks_span_the_pages_and_cover_every_word_of_their_text(
    collections, submit, run_worker, index_chapters
):
    job = await submit(text_pdf(6, words=300))
    await run_worker()

    await index_chapters()

    chunks = await collections.chunks.find({"job_id": job["job_id"]}).sort("chunk_index").to_list()
    pages = await collections.pages.find({"job_id": job["job_id"]}).sort("page_index").to_list()
    assert [c["chunk_index"] for c in chunks] == list(range(len(chunks)))
    assert chunks[0]["page_start"] == 1
    assert chunks[-1]["page_end"] == 6
    for chunk in chunks:
        assert 1 <= chunk["page_start"] <= chunk["page_end"] <= 6
        assert chunk["metadata"]["page_number"] == chunk["page_start"]
        assert 0 < chunk["token_count"] <= 254
    passages = " ".join(chunk["content"] for chunk in chunks).split()
    for page in pages:
        for word in normalize(page["content"]).split():
            assert word in passages
    spanning = [c for c in chunks if c["page_end"] > c["page_start"]]
    assert spanning  # passages run on across page breaks


async def test_vectors_are_binary_float32_of_the_models_dimension_and_unit_length(
    app, collections, submit, run_worker, index_chapters
):
    job = await submit(topics_pdf())
    await run_worker()

    await index_chapters()

    model = app.state.services.model
    chunks = await collections.chunks.find({"job_id": job["job_id"]}).to_list()
    assert chunks
    for chunk in chunks:
        stored = chunk["embedding"]
        assert isinstance(stored, Binary)
        assert stored.subtype == 9
        assert len(bytes(stored)) == 2 + 4 * model.dimensions  # float32, not doubles
        vector = np.array(stored.as_vector().data, dtype=np.float32)
        assert vector.shape == (model.dimensions,)
        assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-3  # the model normalises
        assert chunk["embedding_model"] == model.name


async def test_the_chunk_detail_shows_the_vector_and_its_model(
    app, client, auth_headers, collections, submit, run_worker, index_chapters
):
    job = await submit(topics_pdf())
    await run_worker()
    await index_chapters()
    chunk = await collections.chunks.find_one({"job_id": job["job_id"]})

    detail = await client.get(f"/api/v1/chunks/{chunk['_id']}", headers=auth_headers("alice"))
    listed = await client.get(f"/api/v1/jobs/{job['job_id']}/chunks", headers=auth_headers("alice"))

    data = detail.json()["data"]
    assert len(data["embedding"]) == app.state.services.model.dimensions
    assert data["embedding"] == pytest.approx(chunk["embedding"].as_vector().data, abs=1e-6)
    assert data["embedding_model"] == app.state.services.model.name
    assert data["page_start"] == chunk["page_start"]
    assert data["section"] == chunk["section"]
    assert all("embedding" not in item for item in listed.json()["data"]["chunks"])


async def test_sections_come_from_the_pdfs_outline(collections, submit, run_worker, index_chapters):
    job = await submit(topics_pdf())
    await run_worker()

    await index_chapters()

    chunks = await collections.chunks.find({"job_id": job["job_id"]}).to_list()
    assert {chunk["section"] for chunk in chunks} == set(TOPICS)
    tides = next(c for c in chunks if "Moon" in c["content"])
    assert tides["section"] == "Harbour tides"
    assert tides["page_start"] == 2


async def test_the_index_vectors_stage_moves_from_pending_to_completed(
    client, auth_headers, submit, run_worker, index_chapters
):
    job = await submit(text_pdf(2))
    await run_worker()
    url = f"/api/v1/jobs/{job['job_id']}"

    before = (await client.get(url, headers=auth_headers("alice"))).json()
    await index_chapters()
    after = (await client.get(url, headers=auth_headers("alice"))).json()

    assert before["stages"][-1] == {
        "id": "stage_4", "stageName": "index_vectors", "status": "pending", "percentComplete": 0,
    }  # fmt: skip
    assert after["stages"][-1]["status"] == "completed"
    assert after["stages"][-1]["percentComplete"] == 100
    assert after["status"] == "completed"


async def test_indexing_does_not_change_what_a_poll_sees(
    client, auth_headers, submit, run_worker, index_chapters
):
    job = await submit(text_pdf(2))
    await run_worker()
    url = f"/api/v1/books/jobs/{job['job_id']}"
    before = await client.get(url, headers=auth_headers("alice"))

    await index_chapters()
    after = await client.get(url, headers=auth_headers("alice"))

    assert after.headers["etag"] == before.headers["etag"]  # no re-download for the pollers
    assert after.json() == before.json()


async def test_a_model_change_marks_chapters_stale_and_the_reindex_command_brings_them_back(
    client, auth_headers, collections, settings, submit, run_worker, index_chapters
):
    job = await submit(topics_pdf())
    await run_worker()
    await index_chapters()
    chapter = await _chapter(client, auth_headers, job)
    # As if indexed by another model: what a changed EMBEDDING_MODEL_DIR leaves behind.
    await collections.chapters.update_one(
        {"chapter_id": chapter["chapter_id"]}, {"$set": {"search.model": "another-model:0"}}
    )
    await collections.chunks.update_many(
        {"chapter_id": chapter["chapter_id"]}, {"$set": {"embedding_model": "another-model:0"}}
    )

    stale = await _chapter(client, auth_headers, job)
    said = await reindex(settings, everything=False, user_id=None)
    pending = await _chapter(client, auth_headers, job)
    indexed = await index_chapters()
    ready = await _chapter(client, auth_headers, job)

    assert stale["search_status"] == "stale"
    assert said.startswith("1 chapter(s) marked to be indexed")
    assert pending["search_status"] == "pending"
    assert indexed == 1
    assert ready["search_status"] == "ready"
    models = await collections.chunks.distinct(
        "embedding_model", {"chapter_id": chapter["chapter_id"]}
    )
    assert models == [ready_model := (await collections.chapters.find_one())["search"]["model"]]
    assert ready_model != "another-model:0"


async def test_reindex_moves_pages_stored_before_they_had_their_own_collection(
    collections, settings, store, job_factory
):
    job = await job_factory(status="completed")
    await collections.chapters.insert_one(
        {"chapter_id": "old-chapter", "job_id": job.job_id, "user_id": "alice", "book_id": "b",
         "title": "Old", "total_pages": 2, "source_filename": "old.pdf"}
    )  # fmt: skip
    await collections.chunks.insert_many(
        [
            {"_id": f"old-{i}", "job_id": job.job_id, "chapter_id": "old-chapter",
             "user_id": "alice", "chunk_index": i, "content": f"old page {i}", "has_text": True,
             "metadata": {"source_file": "old.pdf", "page_number": i + 1, "total_pages": 2}}
            for i in range(2)
        ]
    )  # fmt: skip

    said = await reindex(settings, everything=False, user_id=None)
    again = await reindex(settings, everything=False, user_id=None)

    assert "2 page(s) moved" in said
    assert "moved" not in again
    pages = await collections.pages.find({"job_id": job.job_id}).sort("page_index").to_list()
    assert [(p["page_index"], p["content"]) for p in pages] == [
        (0, "old page 0"),
        (1, "old page 1"),
    ]
    assert await collections.chunks.count_documents({"job_id": job.job_id}) == 0
    chapter = await collections.chapters.find_one({"chapter_id": "old-chapter"})
    assert chapter["search"]["status"] == "pending"
    assert await store.chapters.page_texts(job.job_id) == [(1, "old page 0"), (2, "old page 1")]


async def test_a_run_whose_index_lease_was_taken_back_stops_and_writes_nothing_more(
    store, collections, submit, run_worker, index_chapters
):
    await submit(text_pdf(2))
    await run_worker()
    claim = indexing.claim(utcnow())
    chapter = await store.chapters.apply_index(claim)
    # The sweeper took it back (the run seemed dead), and it was claimed again since.
    await store.chapters.apply_index(
        indexing.release(
            chapter["chapter_id"], claim.lease_id, stale_before=utcnow() + timedelta(1)
        )
    )

    progressed = await store.chapters.apply_index(
        indexing.progress(chapter["chapter_id"], claim.lease_id, 5, 5, utcnow())
    )
    finished = await store.chapters.apply_index(
        indexing.ready(chapter["chapter_id"], claim.lease_id, "m", 5, utcnow())
    )

    assert progressed is None
    assert finished is None
    stored = await collections.chapters.find_one({"chapter_id": chapter["chapter_id"]})
    assert stored["search"]["status"] == "pending"
    assert await index_chapters() == 1  # the next claim indexes it whole


async def test_the_sweeper_hands_back_a_chapter_whose_indexer_died(
    store, collections, settings, queue, submit, run_worker
):
    job = await submit(text_pdf(2))
    await run_worker()
    claim = indexing.claim(utcnow() - timedelta(minutes=5))  # its heartbeat long stale
    chapter = await store.chapters.apply_index(claim)

    swept = await sweep({"settings": settings, "redis": queue, "store": store})

    assert swept["reindexed"] == 1
    stored = await collections.chapters.find_one({"chapter_id": chapter["chapter_id"]})
    assert stored["search"]["status"] == "pending"
    assert stored["search"]["lease_id"] is None
    assert job["job_id"] == stored["job_id"]


async def test_a_batch_slower_than_stale_after_keeps_its_chapter(
    store, collections, settings, queue, submit, run_worker, embeddings, index_chapters
):
    """The lease's heartbeat beats on a timer, not per batch: the sweeper leaves alone an
    indexer whose embedding process is busy (here: stopped) for longer than STALE_AFTER_S."""
    await submit(text_pdf(2))
    await run_worker()
    timing = {"heartbeat_interval_s": 0.2, "stale_after_s": 3.0}
    sweeping = settings.model_copy(update=timing)
    await embeddings.start()
    os.kill(embeddings.pid, signal.SIGSTOP)
    resumed = asyncio.get_running_loop().call_later(4.5, os.kill, embeddings.pid, signal.SIGCONT)
    handed_back = 0

    async def sweeper():
        nonlocal handed_back
        while True:
            handed_back += (await sweep({"settings": sweeping, "redis": queue, "store": store}))[
                "reindexed"
            ]
            await asyncio.sleep(0.5)

    sweeps = asyncio.create_task(sweeper())
    try:
        indexed = await index_chapters(**timing)
    finally:
        sweeps.cancel()
        resumed.cancel()
        os.kill(embeddings.pid, signal.SIGCONT)

    assert indexed == 1
    assert handed_back == 0
    stored = await collections.chapters.find_one({})
    assert (stored["search"]["status"], stored["search"]["attempts"]) == ("ready", 1)


async def test_a_chapter_whose_indexing_keeps_failing_is_marked_failed_with_why(
    client, auth_headers, store, collections, submit, run_worker, index_chapters
):
    job = await submit(text_pdf(1))
    await run_worker()
    await collections.chapters.update_many({}, {"$set": {"search.attempts": 3}})

    await index_chapters()

    chapter = await _chapter(client, auth_headers, job)
    stored = await collections.chapters.find_one({"chapter_id": chapter["chapter_id"]})
    assert chapter["search_status"] == "failed"
    assert "kept failing" in stored["search"]["error"]
    detail = await client.get(f"/api/v1/jobs/{job['job_id']}", headers=auth_headers("alice"))
    assert detail.json()["stages"][-1]["status"] == "failed"


async def test_an_empty_chapter_is_ready_with_no_chunks(
    collections, store, job_factory, index_chapters
):
    job = await job_factory(status="completed")
    await store.chapters.write_pages(
        {"job_id": job.job_id, "user_id": "alice"}, "blank", "b.pdf", 1,
        [StoredPage(0, "", has_text=False, text_source="none")],
    )  # fmt: skip
    await store.chapters.create_chapter(
        {"job_id": job.job_id, "user_id": "alice", "book_id": "b", "file_id": "f"},
        "blank", "Blank", 1, "b.pdf", repaired=False,
    )  # fmt: skip

    assert await index_chapters() == 1

    chapter = await collections.chapters.find_one({"chapter_id": "blank"})
    assert chapter["search"]["status"] == "ready"
    assert chapter["search"]["chunks"] == 0
    assert chapter["pages_without_text"] == 1


async def test_passages_are_stored_with_their_term_vectors(
    collections, submit, run_worker, index_chapters
):
    job = await submit(topics_pdf())
    await run_worker()

    await index_chapters()

    chapter = await collections.chapters.find_one({"job_id": job["job_id"]})
    chunks = await collections.chunks.find({"job_id": job["job_id"]}).to_list()
    assert chapter["search"]["terms"] == ANALYZER
    for chunk in chunks:
        assert chunk["terms"] == term_vector(chunk["content"])
    tides = next(c for c in chunks if "Moon" in c["content"])
    stored = np.frombuffer(tides["terms"], dtype=TERM)
    assert term_id("moon") in stored["id"].tolist()
    assert stored["id"].tolist() == sorted(stored["id"].tolist())


async def test_reindex_adds_term_vectors_to_chapters_indexed_without_them(
    collections, settings, submit, run_worker, index_chapters
):
    job = await submit(topics_pdf())
    await run_worker()
    await index_chapters()
    chapter = await collections.chapters.find_one({"job_id": job["job_id"]})
    # As a chapter indexed before passages had term vectors was left.
    await collections.chunks.update_many({"job_id": job["job_id"]}, {"$unset": {"terms": ""}})
    await collections.chapters.update_one(
        {"job_id": job["job_id"]}, {"$unset": {"search.terms": ""}}
    )

    said = await reindex(settings, everything=False, user_id=None)
    again = await reindex(settings, everything=False, user_id=None)

    assert said.startswith("0 chapter(s) marked to be indexed")  # nothing embedded again
    assert "term vectors added to 1 chapter(s)" in said
    assert "term vectors" not in again
    after = await collections.chapters.find_one({"job_id": job["job_id"]})
    assert after["search"]["terms"] == ANALYZER
    assert after["search"]["indexed_at"] == chapter["search"]["indexed_at"]
    for chunk in await collections.chunks.find({"job_id": job["job_id"]}).to_list():
        assert chunk["terms"] == term_vector(chunk["content"])


async def _passages_bson_bytes(collections, chapter_id: str) -> int:
    cursor = await collections.chunks.aggregate(
        [
            {"$match": {"chapter_id": chapter_id}},
            {"$group": {"_id": None, "bytes": {"$sum": {"$bsonSize": "$$ROOT"}}}},
        ]
    )
    rows = await cursor.to_list()
    return int(rows[0]["bytes"]) if rows else 0


async def test_a_chapters_passages_count_against_its_owners_quota_and_go_with_it(
    client, auth_headers, collections, store, submit, run_worker, index_chapters
):
    job = await submit(text_pdf(6, words=300))
    await run_worker()
    chapter = await _chapter(client, auth_headers, job)
    before = await store.usage.stored_bytes("alice")

    await index_chapters()

    key = passages_key(chapter["chapter_id"])
    holding = await collections.holdings.find_one({"_id": key})
    stored = await _passages_bson_bytes(collections, chapter["chapter_id"])
    assert holding["user_id"] == "alice"
    assert await store.usage.stored_bytes("alice") - before == holding["bytes"]
    # The estimate made before they were written is what they take once embedded, give or take
    # the BSON framing of a field or two.
    assert stored > 0
    assert 0.97 * stored <= holding["bytes"] <= 1.1 * stored

    deleted = await client.delete(
        f"{CHAPTERS}/{chapter['chapter_id']}", headers=auth_headers("alice")
    )
    assert deleted.status_code == 204
    assert await collections.holdings.find_one({"_id": key}) is None
    assert await store.usage.held(chapter_prefix(chapter["chapter_id"])) == 0


async def test_passages_past_the_quota_fail_the_index_not_the_chapter(
    client, auth_headers, collections, settings, store, submit, run_worker, index_chapters
):
    job = await submit(text_pdf(6, words=300))
    await run_worker()
    chapter = await _chapter(client, auth_headers, job)
    # Everything but 100 bytes of alice's quota taken by something else she stores.
    filler = f"tests/filler-{chapter['chapter_id']}"
    room = settings.storage_quota_bytes - await store.usage.stored_bytes("alice") - 100
    await store.usage.take("alice", [Holding(filler, room, "pdf")], settings.storage_quota_bytes)
    try:
        await index_chapters()
        refused = await _chapter(client, auth_headers, job)
        pages = await client.get(
            f"{CHAPTERS}/{chapter['chapter_id']}/pages", headers=auth_headers("alice")
        )
        kept = await collections.chunks.count_documents({"chapter_id": chapter["chapter_id"]})
        stored = await collections.chapters.find_one({"chapter_id": chapter["chapter_id"]})
    finally:
        await store.usage.give_back(filler)

    assert refused["search_status"] == "failed"
    assert "STORAGE_QUOTA_MB" in stored["search"]["error"]
    assert kept == 0  # nothing written past the quota
    assert await collections.holdings.find_one({"_id": passages_key(chapter["chapter_id"])}) is None
    assert pages.status_code == 200  # the chapter itself is untouched
    assert pages.json()["total"] == 6

    # Room made: a re-index brings it back.
    await reindex(settings, everything=False, user_id=None)
    await index_chapters()
    assert (await _chapter(client, auth_headers, job))["search_status"] == "ready"
