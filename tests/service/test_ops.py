"""Liveness, readiness, and what clients see while MongoDB is down."""

from __future__ import annotations

import asyncio

import pytest

from devstack.embedded import free_port, remove_tree, start_mongod


async def test_health_is_ok_without_auth(client):
    response = await client.get("/health")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_ready_when_mongodb_and_redis_answer(client):
    response = await client.get("/ready")

    assert response.status_code == 200
    assert response.json() == {"status": "ready", "checks": {"mongodb": "ok", "redis": "ok"}}


async def test_ready_names_redis_when_it_is_down(settings, other_app):
    no_redis = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})

    async with other_app(no_redis) as client:
        response = await client.get("/ready")

    assert response.status_code == 503
    assert response.json()["checks"] == {"mongodb": "ok", "redis": "unreachable"}
    assert response.json()["detail"] == "Not ready: redis unreachable"


@pytest.fixture
def own_mongod(tmp_path):
    """A mongod this test may kill and restart."""
    dbpath, port = tmp_path / "db", free_port()
    servers = [start_mongod(dbpath, port)]
    yield servers, dbpath, port
    for server in servers:
        server.stop()
    remove_tree(dbpath)


async def test_mongodb_down_is_503_then_recovers(settings, own_mongod, other_app, cert_server):
    from pymongo import AsyncMongoClient

    from service.store.documents import PdfChapterJob

    servers, dbpath, port = own_mongod
    own = settings.model_copy(update={"mongodb_url": servers[0].url, "mongodb_db": "pcj_outage"})
    headers = {"Authorization": f"Bearer {cert_server.token('alice')}"}

    async with other_app(own) as client:
        job = PdfChapterJob(user_id="alice", book_id="b", file_id="f")
        mongo: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(servers[0].url)
        try:
            await mongo["pcj_outage"]["pdf_chapter_jobs"].insert_one(job.model_dump())
        finally:
            await mongo.close()
        url = f"/api/v1/books/jobs/{job.job_id}"
        assert (await client.get(url, headers=headers)).status_code == 200

        servers[0].stop()
        down = await asyncio.wait_for(client.get(url, headers=headers), timeout=15)
        not_ready = await asyncio.wait_for(client.get("/ready"), timeout=15)
        other_seeds = {
            path: await asyncio.wait_for(client.get(path, headers=headers), timeout=15)
            for path in (
                f"/api/v1/jobs/{job.job_id}",
                f"/api/v1/ingestion/job/{job.job_id}",
                f"/api/v1/jobs/{job.job_id}/chunks",
            )
        }

        servers.append(start_mongod(dbpath, port))
        recovered = None
        for _ in range(40):
            recovered = await asyncio.wait_for(client.get(url, headers=headers), timeout=15)
            if recovered.status_code == 200:
                break
            await asyncio.sleep(0.25)

    assert down.status_code == 503
    assert down.json() == {
        "detail": "Service temporarily unavailable: database is unreachable, retry later"
    }
    assert down.headers["Retry-After"]
    assert not_ready.status_code == 503
    assert not_ready.json()["checks"]["mongodb"] in {"unreachable", "timeout"}
    assert {path: answer.status_code for path, answer in other_seeds.items()} == dict.fromkeys(
        other_seeds, 503
    )
    chunks = other_seeds[f"/api/v1/jobs/{job.job_id}/chunks"].json()  # seed 004's envelope
    assert (chunks["success"], chunks["data"], chunks["error"]["code"]) == (
        False, None, "SERVICE_UNAVAILABLE",
    )  # fmt: skip
    assert recovered is not None
    assert recovered.status_code == 200
    assert recovered.json()["job_id"] == job.job_id  # nothing lost across the outage
