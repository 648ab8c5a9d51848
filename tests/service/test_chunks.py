"""Seed 004: GET /api/v1/jobs/{job_id}/chunks and GET /api/v1/chunks/{chunk_id}."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from service.store.documents import ChunkMetadata, DocumentChunk
from tests.support.pdfs import text_pdf

BASE = datetime(2026, 3, 1, 9, 0, 0, 0, tzinfo=UTC)


def _url(job_id):
    return f"/api/v1/jobs/{job_id}/chunks"


@pytest.fixture
def chunks_of(job_factory, collections):
    """``await chunks_of(n)``: a job of alice's with n chunks whose times run against their order.

    Chunk i was created at BASE + (n - i) s (so created_at order is the reverse of chunk_index)
    and updated at BASE + ((i * 7) mod n) minutes.
    """

    async def make(count, user_id="alice", content="x"):
        job = await job_factory(user_id=user_id)
        for index in range(count):
            chunk = DocumentChunk(
                job_id=job.job_id,
                chapter_id="chapter-1",
                book_id="book_1",
                user_id=user_id,
                chunk_index=index,
                content=f"{index}:{content}",
                metadata=ChunkMetadata(
                    source_file="doc.pdf", page_number=index + 1, total_pages=count
                ),
                page_start=index + 1,
                page_end=index + 1,
                token_count=3,
                created_at=BASE + timedelta(seconds=count - index),
                updated_at=BASE + timedelta(minutes=(index * 7) % count),
            )
            await collections.chunks.insert_one(chunk.model_dump(by_alias=True))
        return job

    return make


async def _list(client, auth_headers, job_id, user_id="alice", **params):
    return await client.get(_url(job_id), params=params, headers=auth_headers(user_id))


async def test_list_has_the_contract_envelope_with_content_cut_to_500_and_no_vector(
    collections, client, auth_headers, submit, run_worker, index_chapters
):
    job = await submit(text_pdf(3, words=200), filename="long.pdf")
    await run_worker()
    await index_chapters()

    response = await _list(client, auth_headers, job["job_id"])

    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True
    assert body["error"] is None
    total = await collections.chunks.count_documents({"job_id": job["job_id"]})
    assert total >= 3  # passages of about 160 tokens: a 200-word page makes two or more
    assert body["data"]["pagination"] == {
        "total": total, "page": 1, "per_page": 20, "total_pages": 1,
        "has_next": False, "has_prev": False,
    }  # fmt: skip
    first = body["data"]["chunks"][0]
    assert set(first) == {
        "id", "job_id", "chunk_index", "content", "metadata", "created_at", "updated_at",
    }  # fmt: skip
    assert first["job_id"] == job["job_id"]
    assert first["metadata"] == {"source_file": "long.pdf", "page_number": 1, "total_pages": 3}
    stored = await collections.chunks.find_one({"_id": first["id"]})
    assert first["content"] == stored["content"][:500]
    assert "embedding" not in first
    assert "embedding_model" not in first
    assert stored["embedding"] is not None  # stored, and left out of the list


async def test_list_cuts_each_content_to_its_first_500_characters(client, auth_headers, chunks_of):
    job = await chunks_of(1, content="z" * 1200)

    response = await _list(client, auth_headers, job.job_id)

    assert response.json()["data"]["chunks"][0]["content"] == ("0:" + "z" * 1200)[:500]


async def test_list_pages_with_limit_and_offset(client, auth_headers, chunks_of):
    job = await chunks_of(45)

    middle = (await _list(client, auth_headers, job.job_id, limit=20, offset=20)).json()["data"]
    last = (await _list(client, auth_headers, job.job_id, limit=20, offset=40)).json()["data"]

    assert [c["chunk_index"] for c in middle["chunks"]] == list(range(20, 40))
    assert middle["pagination"] == {
        "total": 45, "page": 2, "per_page": 20, "total_pages": 3,
        "has_next": True, "has_prev": True,
    }  # fmt: skip
    assert [c["chunk_index"] for c in last["chunks"]] == list(range(40, 45))
    assert last["pagination"]["has_next"] is False


async def test_offset_past_the_end_is_an_empty_page(client, auth_headers, chunks_of):
    job = await chunks_of(5)

    response = await _list(client, auth_headers, job.job_id, offset=50)

    assert response.status_code == 200
    data = response.json()["data"]
    assert data["chunks"] == []
    assert data["pagination"] == {
        "total": 5, "page": 3, "per_page": 20, "total_pages": 1,
        "has_next": False, "has_prev": True,
    }  # fmt: skip


async def test_max_limit_is_100(client, auth_headers, chunks_of):
    job = await chunks_of(120)

    at_max = await _list(client, auth_headers, job.job_id, limit=100)
    over = await _list(client, auth_headers, job.job_id, limit=101)

    assert len(at_max.json()["data"]["chunks"]) == 100
    assert over.status_code == 400
    assert over.json()["error"]["code"] == "VALIDATION_ERROR"
    assert over.json()["error"]["details"] == {"field": "limit", "value": "101"}


@pytest.mark.parametrize(
    ("sort_by", "key"),
    [
        ("chunk_index", lambda c: c["chunk_index"]),
        ("created_at", lambda c: (c["created_at"], c["chunk_index"])),
        ("updated_at", lambda c: (c["updated_at"], c["chunk_index"])),
    ],
)
@pytest.mark.parametrize("sort_order", ["asc", "desc"])
async def test_each_sort_orders_the_chunks(
    client, auth_headers, chunks_of, sort_by, key, sort_order
):
    job = await chunks_of(10)

    response = await _list(
        client, auth_headers, job.job_id, sort_by=sort_by, sort_order=sort_order, limit=100
    )

    chunks = response.json()["data"]["chunks"]
    assert len(chunks) == 10
    assert chunks == sorted(chunks, key=key, reverse=sort_order == "desc")
    if sort_by == "created_at":  # created_at runs against chunk_index in this fixture
        expected = list(range(9, -1, -1)) if sort_order == "asc" else list(range(10))
        assert [c["chunk_index"] for c in chunks] == expected


@pytest.mark.parametrize(
    ("params", "field", "value"),
    [
        ({"limit": "0"}, "limit", "0"),
        ({"limit": "abc"}, "limit", "abc"),
        ({"offset": "-1"}, "offset", "-1"),
        ({"sort_by": "embedding"}, "sort_by", "embedding"),
        ({"sort_order": "sideways"}, "sort_order", "sideways"),
    ],
)
async def test_bad_parameter_is_400_validation_error(
    client, auth_headers, chunks_of, params, field, value
):
    job = await chunks_of(1)

    response = await _list(client, auth_headers, job.job_id, **params)

    assert response.status_code == 400
    body = response.json()
    assert body["success"] is False
    assert body["data"] is None
    assert body["error"]["code"] == "VALIDATION_ERROR"
    assert body["error"]["details"] == {"field": field, "value": value}
    assert field in body["error"]["message"]


async def test_malformed_job_id_is_400_validation_error(client, auth_headers):
    response = await _list(client, auth_headers, "invalid-uuid")

    assert response.status_code == 400
    assert response.json() == {
        "success": False,
        "data": None,
        "error": {
            "code": "VALIDATION_ERROR",
            "message": "Invalid job_id format",
            "details": {"field": "job_id", "value": "invalid-uuid"},
        },
    }


@pytest.mark.parametrize("owner", ["nobody", "bob"])
async def test_unknown_or_other_users_job_is_404_job_not_found(
    collections, client, auth_headers, chunks_of, owner
):
    job_id = (await chunks_of(2, user_id="bob")).job_id if owner == "bob" else str(uuid.uuid4())

    response = await _list(client, auth_headers, job_id, user_id="alice")

    assert response.status_code == 404
    assert response.json() == {
        "success": False,
        "data": None,
        "error": {"code": "JOB_NOT_FOUND", "message": f"Job with ID {job_id} not found"},
    }
    assert await collections.chunks.count_documents({}) == (2 if owner == "bob" else 0)


async def test_missing_token_is_401_in_the_envelope(client, chunks_of):
    job = await chunks_of(1)

    response = await client.get(_url(job.job_id))

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json() == {
        "success": False,
        "data": None,
        "error": {"code": "UNAUTHORIZED", "message": "Could not validate credentials"},
    }


async def test_success_carries_rate_limit_headers(app, client, auth_headers, chunks_of, queue):
    job = await chunks_of(1)

    response = await _list(client, auth_headers, job.job_id)

    assert response.headers["ratelimit-limit"] == "100"
    assert response.headers["ratelimit-remaining"] == "99"
    assert 0 < int(response.headers["ratelimit-reset"]) <= 60
    assert await app.state.services.limiter.count("list_chunks:alice", 100) == 1


async def test_rate_limit_holds_across_two_app_instances_sharing_redis(
    app, client, other_app, settings, auth_headers, chunks_of, queue
):
    job = await chunks_of(1)
    alice = auth_headers("alice")

    async with other_app(settings) as second:
        answers = await asyncio.gather(
            *[
                (client if n % 2 else second).get(_url(job.job_id), headers=alice)
                for n in range(130)
            ]
        )
        refused = await second.get(_url(job.job_id), headers=alice)
        bob = await second.get(_url(job.job_id), headers=auth_headers("bob"))

    assert sorted(a.status_code for a in answers) == [200] * 100 + [429] * 30
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.headers["ratelimit-remaining"] == "0"
    assert refused.json() == {
        "success": False,
        "data": None,
        "error": {
            "code": "RATE_LIMITED",
            "message": "Rate limit exceeded: 100 requests per 60 seconds",
        },
    }
    assert bob.status_code == 404  # another user's own quota; bob does not own the job
    assert await app.state.services.limiter.count("list_chunks:alice", 100) == 100


async def test_limit_is_not_enforced_while_redis_is_down(
    other_app, settings, auth_headers, chunks_of
):
    job = await chunks_of(1)
    unreachable = settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"})

    async with other_app(unreachable) as client:
        response = await client.get(_url(job.job_id), headers=auth_headers("alice"))

    assert response.status_code == 200
    assert "ratelimit-limit" not in response.headers


async def test_chunk_detail_is_the_whole_chunk(collections, client, auth_headers, chunks_of):
    job = await chunks_of(1, content="y" * 2000)
    chunk = await collections.chunks.find_one({"job_id": job.job_id})

    response = await client.get(f"/api/v1/chunks/{chunk['_id']}", headers=auth_headers("alice"))

    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True
    assert body["error"] is None
    assert body["data"]["content"] == "0:" + "y" * 2000
    assert body["data"]["chapter_id"] == "chapter-1"
    assert body["data"]["job_id"] == job.job_id
    assert body["data"]["embedding"] is None  # not indexed yet
    assert body["data"]["embedding_model"] is None


async def test_chunk_detail_of_a_malformed_id_is_400(client, auth_headers):
    response = await client.get("/api/v1/chunks/not-a-uuid", headers=auth_headers("alice"))

    assert response.status_code == 400
    assert response.json() == {
        "success": False,
        "data": None,
        "error": {
            "code": "VALIDATION_ERROR",
            "message": "Invalid chunk_id format",
            "details": {"field": "chunk_id", "value": "not-a-uuid"},
        },
    }


async def test_chunk_detail_of_another_users_chunk_is_404(
    collections, client, auth_headers, chunks_of
):
    job = await chunks_of(1, user_id="bob")
    bobs = await collections.chunks.find_one({"job_id": job.job_id})

    response = await client.get(f"/api/v1/chunks/{bobs['_id']}", headers=auth_headers("alice"))

    assert response.status_code == 404
    assert response.json() == {
        "success": False,
        "data": None,
        "error": {"code": "CHUNK_NOT_FOUND", "message": f"Chunk with ID {bobs['_id']} not found"},
    }


async def test_corrupt_chunk_is_500_in_the_envelope_without_internals(
    collections, client, auth_headers, chunks_of
):
    job = await chunks_of(1)
    await collections.chunks.update_many({}, {"$unset": {"metadata": ""}})

    response = await client.get(
        _url(job.job_id), headers={**auth_headers("alice"), "X-Request-ID": "req-9"}
    )

    assert response.status_code == 500
    assert response.json() == {
        "success": False,
        "data": None,
        "error": {
            "code": "INTERNAL_ERROR",
            "message": "Failed to list chunks: internal error (request id req-9)",
            "details": {"request_id": "req-9"},
        },
    }
    assert "KeyError" not in response.text
