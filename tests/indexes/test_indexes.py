"""`python -m indexes sync|check` against a real mongod, and TTL expiry actually happening."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import timedelta

import pytest
from pymongo.errors import NetworkTimeout

import indexes.__main__ as tool
from indexes.spec import specification
from indexes.sync import compare, sync
from service.domain.job import utcnow
from service.store import mongo
from tests.conftest import REPO_ROOT


@pytest.fixture
async def db(app):
    database = app.state.services.store.client["pcj_indexes_test"]
    yield database
    await app.state.services.store.client.drop_database("pcj_indexes_test")


def _cli(command: str, settings, db_name: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "MONGODB_URL": settings.mongodb_url,
        "MONGODB_DB": db_name,
        "JOB_TTL_DAYS": str(settings.job_ttl_days),
        "VECTOR_SEARCH": settings.vector_search,
    }
    return subprocess.run(
        [sys.executable, "-m", "indexes", command],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_sync_creates_the_seed_indexes_with_names(db, settings):
    await sync(db, specification(settings))

    info = await db["pdf_chapter_jobs"].index_information()
    assert info["job_id_unique"]["key"] == [("job_id", 1)]
    assert info["job_id_unique"]["unique"] is True
    assert info["user_id_status"]["key"] == [("user_id", 1), ("status", 1)]
    assert info["updated_at"]["key"] == [("updated_at", 1)]
    assert info["created_at_ttl"]["key"] == [("created_at", 1)]
    assert info["created_at_ttl"]["expireAfterSeconds"] == 604800
    assert set(info) == {
        "_id_",
        "job_id_unique",
        "user_id_status",
        "updated_at",
        "created_at_ttl",
        "user_id_created_at",
        "user_id_file_id_created_at",
        "status_heartbeat_at",
        "user_id_idempotency_key_unique",
        "discard_pending_updated_at",
    }
    # Only the few jobs whose output is still to be removed are in it.
    assert info["discard_pending_updated_at"]["partialFilterExpression"] == {
        "discard_pending": True
    }
    assert info["user_id_file_id_created_at"]["key"] == [
        ("user_id", 1), ("file_id", 1), ("created_at", -1),
    ]  # fmt: skip
    chunks = await db["document_chunks"].index_information()
    assert chunks["job_id_chunk_index_unique"]["key"] == [("job_id", 1), ("chunk_index", 1)]
    assert chunks["job_id_chunk_index_unique"]["unique"] is True
    # Keyword search: the user first, then the passage's words.
    assert chunks["user_id_content_text"]["key"] == [("user_id", 1), ("_fts", "text"), ("_ftsx", 1)]
    pages = await db["chapter_pages"].index_information()
    assert pages["job_id_page_index_unique"]["key"] == [("job_id", 1), ("page_index", 1)]
    assert pages["job_id_page_index_unique"]["unique"] is True


async def test_sync_twice_does_nothing_the_second_time(db, settings):
    await sync(db, specification(settings))

    actions = await sync(db, specification(settings))

    assert actions == []
    assert await compare(db, specification(settings)) == []


async def test_sync_applies_a_changed_ttl_with_collmod_and_keeps_data(db, settings):
    await sync(db, specification(settings))
    await db["pdf_chapter_jobs"].insert_many(
        [{"job_id": str(i), "created_at": utcnow()} for i in range(50)]
    )

    actions = await sync(db, specification(settings.model_copy(update={"job_ttl_days": 30})))

    assert actions == [
        "pdf_chapter_jobs.created_at_ttl: expireAfterSeconds 604800 -> 2592000 (collMod)"
    ]
    info = await db["pdf_chapter_jobs"].index_information()
    assert info["created_at_ttl"]["expireAfterSeconds"] == 2592000
    assert await db["pdf_chapter_jobs"].count_documents({}) == 50


async def test_sync_rebuilds_an_index_whose_definition_changed(db, settings):
    await db["pdf_chapter_jobs"].create_index([("user_id", 1)], name="user_id_status")

    actions = await sync(db, specification(settings))

    assert "pdf_chapter_jobs.user_id_status: dropped to rebuild ({user_id: 1})" in actions
    info = await db["pdf_chapter_jobs"].index_information()
    assert info["user_id_status"]["key"] == [("user_id", 1), ("status", 1)]


async def test_sync_leaves_unknown_indexes_alone(db, settings):
    await db["pdf_chapter_jobs"].create_index([("book_id", 1)], name="ops_added")

    await sync(db, specification(settings))

    differences = await compare(db, specification(settings))
    assert [(d.name, d.problem) for d in differences] == [("ops_added", "unexpected")]


async def test_check_cli_names_each_missing_or_different_index(db, settings):
    await sync(db, specification(settings))
    await db["pdf_chapter_jobs"].drop_index("updated_at")
    await db.command(
        "collMod", "pdf_chapter_jobs", index={"name": "created_at_ttl", "expireAfterSeconds": 60}
    )

    result = await asyncio.to_thread(_cli, "check", settings, "pcj_indexes_test")

    assert result.returncode == 1
    assert "FAIL pdf_chapter_jobs.updated_at: missing ({updated_at: 1})" in result.stdout
    assert (
        "FAIL pdf_chapter_jobs.created_at_ttl: different (expected {created_at: 1} "
        "expireAfterSeconds=604800, found {created_at: 1} expireAfterSeconds=60)"
    ) in result.stdout
    assert "2 index(es) missing or different" in result.stdout


async def test_check_cli_passes_after_sync_cli(db, settings):
    synced = await asyncio.to_thread(_cli, "sync", settings, "pcj_indexes_test")

    checked = await asyncio.to_thread(_cli, "check", settings, "pcj_indexes_test")

    assert synced.returncode == 0, synced.stderr
    assert checked.returncode == 0, checked.stdout
    assert "indexes OK on pcj_indexes_test" in checked.stdout


async def test_sync_with_vector_search_atlas_says_this_server_has_no_search_indexes(db, settings):
    atlas = settings.model_copy(update={"vector_search": "atlas"})

    synced = await asyncio.to_thread(_cli, "sync", atlas, "pcj_indexes_test")

    assert synced.returncode == 0, synced.stderr
    assert (
        "note: document_chunks.chunk_embedding_vector: the server has no search indexes"
    ) in synced.stdout
    assert "search stays exact" in synced.stdout


# Server-side JavaScript that takes about a second: an index build longer than the socket timeout,
# in little.
SLOW = {"$where": "sleep(1000) || true"}


async def test_sync_waits_for_an_index_build_longer_than_the_services_socket_timeout(
    db, settings, monkeypatch
):
    monkeypatch.setattr(mongo, "socket_timeout_ms", lambda _settings: 300)
    await db.slow.insert_one({"x": 1})
    real_sync, waited = tool.sync, []

    async def slow_sync(database, spec):  # a build the server takes a while to answer
        waited.append(await database.slow.find_one(SLOW))
        return await real_sync(database, spec)

    monkeypatch.setattr(tool, "sync", slow_sync)
    service_client = mongo.create_client(settings)
    try:
        with pytest.raises(NetworkTimeout):  # what the tool's command met before
            await service_client[db.name].slow.find_one(SLOW)
    finally:
        await service_client.close()

    code = await tool._main("sync", settings.model_copy(update={"mongodb_db": db.name}))

    assert code == 0
    assert waited[0]["x"] == 1
    assert await compare(db, specification(settings)) == []


async def test_expired_job_is_removed_by_the_ttl_index(
    collections, app, settings, job_factory, ttl_monitor
):
    await sync(collections.jobs.database, specification(settings))
    old = await job_factory(created_at=utcnow() - timedelta(days=settings.job_ttl_days, minutes=1))
    fresh = await job_factory()
    collection = collections.jobs

    for _ in range(120):  # the TTL monitor runs every second in the test mongod
        if await collection.count_documents({"job_id": old.job_id}) == 0:
            break
        await asyncio.sleep(0.25)

    assert await collection.count_documents({"job_id": old.job_id}) == 0
    assert await collection.count_documents({"job_id": fresh.job_id}) == 1
