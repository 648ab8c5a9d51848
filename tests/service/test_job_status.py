"""Seed 002: GET /api/v1/books/jobs/{job_id}, every status shape and every error."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from service.domain.job import JobStatus
from service.store.documents import JobResult

URL = "/api/v1/books/jobs/{}"
ISO_MS_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
CREATED = datetime(2026, 2, 8, 0, 10, 28, 325000, tzinfo=UTC)


async def test_get_pending_job_has_seed_shape(client, job_factory, auth_headers):
    job = await job_factory(user_id="17BeaeikPBQYk8OWeDUkqm0Ov8e2", created_at=CREATED)

    response = await client.get(URL.format(job.job_id), headers=auth_headers(job.user_id))

    assert response.status_code == 200
    assert response.json() == {
        "job_id": job.job_id,
        "user_id": "17BeaeikPBQYk8OWeDUkqm0Ov8e2",
        "book_id": job.book_id,
        "status": "pending",
        "progress": 0,
        "message": "PDF chapter creation job enqueued",
        "created_at": "2026-02-08T00:10:28.325Z",
        "updated_at": "2026-02-08T00:10:28.325Z",
    }
    assert list(response.json()) == [
        "job_id", "user_id", "book_id", "status", "progress", "message", "created_at", "updated_at",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("progress", "message"),
    [
        (10, "Downloading PDF: document.pdf"),
        (45, "Processed 120/283 pages..."),
        (70, "Processed 283 pages. Creating chapter..."),
    ],
)
async def test_get_processing_job_has_seed_shape(
    client, job_factory, auth_headers, progress, message
):
    updated = CREATED + timedelta(minutes=2)
    job = await job_factory(
        status=JobStatus.processing,
        progress=progress,
        message=message,
        created_at=CREATED,
        updated_at=updated,
        started_at=CREATED + timedelta(seconds=1),
    )

    response = await client.get(URL.format(job.job_id), headers=auth_headers("alice"))

    assert response.status_code == 200
    assert response.json() == {
        "job_id": job.job_id,
        "user_id": "alice",
        "book_id": job.book_id,
        "status": "processing",
        "progress": progress,
        "message": message,
        "created_at": "2026-02-08T00:10:28.325Z",
        "updated_at": "2026-02-08T00:12:28.325Z",
    }


async def test_get_completed_job_has_result_and_completed_at(client, job_factory, auth_headers):
    done = CREATED + timedelta(minutes=6, seconds=16, milliseconds=798)
    job = await job_factory(
        status=JobStatus.completed,
        progress=100,
        message="Chapter created successfully with 283 pages",
        result=JobResult(chapter_id="3939f17c-a8ea-4000-be89-9e7e6f5ca4e9", total_pages=283),
        created_at=CREATED,
        updated_at=done,
        completed_at=done,
    )

    response = await client.get(URL.format(job.job_id), headers=auth_headers("alice"))

    assert response.status_code == 200
    body = response.json()
    assert body == {
        "job_id": job.job_id,
        "user_id": "alice",
        "book_id": job.book_id,
        "status": "completed",
        "progress": 100,
        "message": "Chapter created successfully with 283 pages",
        "result": {"chapter_id": "3939f17c-a8ea-4000-be89-9e7e6f5ca4e9", "total_pages": 283},
        "created_at": "2026-02-08T00:10:28.325Z",
        "updated_at": "2026-02-08T00:16:45.123Z",
        "completed_at": "2026-02-08T00:16:45.123Z",
    }
    assert "error" not in body
    assert "failed_at" not in body


async def test_get_failed_job_is_200_with_error_and_failed_at(client, job_factory, auth_headers):
    failed = CREATED + timedelta(minutes=2, seconds=2, milliseconds=131)
    job = await job_factory(
        status=JobStatus.failed,
        progress=35,
        message="PDF processing failed: Out of memory",
        error="Out of memory",
        created_at=CREATED,
        updated_at=failed,
        failed_at=failed,
    )

    response = await client.get(URL.format(job.job_id), headers=auth_headers("alice"))

    assert response.status_code == 200
    assert response.json() == {
        "job_id": job.job_id,
        "user_id": "alice",
        "book_id": job.book_id,
        "status": "failed",
        "progress": 35,
        "message": "PDF processing failed: Out of memory",
        "error": "Out of memory",
        "created_at": "2026-02-08T00:10:28.325Z",
        "updated_at": "2026-02-08T00:12:30.456Z",
        "failed_at": "2026-02-08T00:12:30.456Z",
    }
    assert "Retry-After" not in response.headers


async def test_get_job_timestamps_are_utc_milliseconds_z(client, job_factory, auth_headers):
    job = await job_factory()

    body = (await client.get(URL.format(job.job_id), headers=auth_headers("alice"))).json()

    assert ISO_MS_Z.match(body["created_at"])
    assert ISO_MS_Z.match(body["updated_at"])


async def test_get_job_of_another_user_is_forbidden(client, job_factory, auth_headers):
    job = await job_factory(user_id="alice", status=JobStatus.processing, progress=45)

    response = await client.get(URL.format(job.job_id), headers=auth_headers("bob"))

    assert response.status_code == 403
    assert response.json() == {"detail": "Access denied to this job"}


async def test_get_unknown_job_is_404_with_its_id(client, auth_headers):
    job_id = "db67a850-1efd-41f7-88ed-b434ef108bc5"

    response = await client.get(URL.format(job_id), headers=auth_headers("alice"))

    assert response.status_code == 404
    assert response.json() == {"detail": f"Job {job_id} not found"}


@pytest.mark.parametrize("job_id", ["not-a-uuid", "123", "db67a850-1efd-41f7-88ed", "%00", "'"])
async def test_get_malformed_job_id_is_404_not_500(client, auth_headers, job_id):
    response = await client.get(URL.format(job_id), headers=auth_headers("alice"))

    assert response.status_code == 404
    assert response.json()["detail"].endswith(" not found")


async def test_get_job_accepts_uppercase_uuid(client, job_factory, auth_headers):
    job = await job_factory()

    response = await client.get(URL.format(job.job_id.upper()), headers=auth_headers("alice"))

    assert response.status_code == 200
    assert response.json()["job_id"] == job.job_id


async def test_get_corrupt_job_is_500_with_request_id_and_no_internals(
    collections, client, job_factory, auth_headers
):
    job = await job_factory()
    collection = collections.jobs
    await collection.update_one({"job_id": job.job_id}, {"$unset": {"created_at": ""}})

    response = await client.get(
        URL.format(job.job_id), headers={**auth_headers("alice"), "X-Request-ID": "req-123"}
    )

    assert response.status_code == 500
    assert response.json() == {
        "detail": "Failed to get job status: internal error (request id req-123)",
        "request_id": "req-123",
    }
    assert response.headers.get_list("x-request-id") == ["req-123"]  # once, not twice
    assert "Traceback" not in response.text
    assert "KeyError" not in response.text


async def test_get_job_sets_strong_etag_and_no_cache(client, job_factory, auth_headers):
    job = await job_factory(status=JobStatus.processing, progress=30)

    response = await client.get(URL.format(job.job_id), headers=auth_headers("alice"))

    assert response.headers["ETag"] == f'"{job.job_id}.1"'
    assert not response.headers["ETag"].startswith("W/")
    assert response.headers["Cache-Control"] == "no-cache"
    assert response.headers["Retry-After"] == "2"


async def test_get_job_with_matching_etag_is_304_without_body(client, job_factory, auth_headers):
    job = await job_factory(status=JobStatus.processing, progress=30)
    first = await client.get(URL.format(job.job_id), headers=auth_headers("alice"))

    second = await client.get(
        URL.format(job.job_id),
        headers={**auth_headers("alice"), "If-None-Match": first.headers["ETag"]},
    )

    assert second.status_code == 304
    assert second.content == b""
    assert second.headers["ETag"] == first.headers["ETag"]
    assert second.headers["Retry-After"] == "2"


async def test_get_job_after_a_write_is_200_with_new_etag(
    collections, client, job_factory, auth_headers
):
    job = await job_factory(status=JobStatus.processing, progress=30)
    first = await client.get(URL.format(job.job_id), headers=auth_headers("alice"))
    await collections.jobs.update_one(
        {"job_id": job.job_id}, {"$set": {"progress": 40}, "$inc": {"version": 1}}
    )

    second = await client.get(
        URL.format(job.job_id),
        headers={**auth_headers("alice"), "If-None-Match": first.headers["ETag"]},
    )

    assert second.status_code == 200
    assert second.json()["progress"] == 40
    assert second.headers["ETag"] != first.headers["ETag"]


async def test_get_job_etag_of_another_user_does_not_reveal_anything(
    client, job_factory, auth_headers
):
    job = await job_factory(user_id="alice")

    response = await client.get(
        URL.format(job.job_id), headers={**auth_headers("bob"), "If-None-Match": "*"}
    )

    assert response.status_code == 403


async def test_completed_job_has_no_retry_after(client, job_factory, auth_headers):
    job = await job_factory(
        status=JobStatus.completed,
        progress=100,
        result=JobResult(chapter_id=str(uuid.uuid4()), total_pages=1),
        completed_at=CREATED,
    )

    response = await client.get(URL.format(job.job_id), headers=auth_headers("alice"))

    assert "Retry-After" not in response.headers


async def test_response_carries_request_id(client, job_factory, auth_headers):
    job = await job_factory()

    response = await client.get(
        URL.format(job.job_id), headers={**auth_headers("alice"), "X-Request-ID": "abc.123"}
    )

    assert response.headers["X-Request-ID"] == "abc.123"


async def test_cors_allows_the_configured_origin_only(client, job_factory, auth_headers):
    job = await job_factory()

    allowed = await client.get(
        URL.format(job.job_id), headers={**auth_headers("alice"), "Origin": "https://wordai.pro"}
    )
    foreign = await client.get(
        URL.format(job.job_id), headers={**auth_headers("alice"), "Origin": "https://evil.test"}
    )

    assert allowed.headers["Access-Control-Allow-Origin"] == "https://wordai.pro"
    assert "ETag" in allowed.headers["Access-Control-Expose-Headers"]
    assert "Access-Control-Allow-Origin" not in foreign.headers


async def test_openapi_documents_the_polling_endpoint(client):
    response = await client.get("/schema/openapi.json")

    assert response.status_code == 200
    operation = response.json()["paths"]["/api/v1/books/jobs/{job_id}"]["get"]
    assert {"200", "304", "401", "403", "404", "500", "503"} <= set(operation["responses"])
