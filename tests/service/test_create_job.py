"""POST /api/v1/books/jobs, listing, cancel and delete."""

from __future__ import annotations

import pytest

from service.domain.job import JobStatus
from tests.support.pdfs import text_pdf

JOBS = "/api/v1/books/jobs"


async def test_create_job_is_202_pending_with_location(client, auth_headers, file_id, queue):
    response = await client.post(
        JOBS, json={"book_id": "book_1", "file_id": file_id}, headers=auth_headers("alice")
    )

    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "pending"
    assert body["progress"] == 0
    assert body["message"] == "PDF chapter creation job enqueued"
    assert body["user_id"] == "alice"
    assert response.headers["Location"] == f"{JOBS}/{body['job_id']}"
    polled = await client.get(response.headers["Location"], headers=auth_headers("alice"))
    assert polled.json() == body
    assert await queue.zcard("arq:queue") == 1


async def test_create_job_for_a_missing_file_is_404(collections, client, auth_headers):
    response = await client.post(
        JOBS, json={"book_id": "b", "file_id": "nope"}, headers=auth_headers("alice")
    )

    assert response.status_code == 404
    assert response.json() == {"detail": "File nope not found"}
    assert await collections.jobs.count_documents({}) == 0


async def test_create_job_for_another_users_file_is_404(client, auth_headers, file_id):
    response = await client.post(
        JOBS, json={"book_id": "b", "file_id": file_id}, headers=auth_headers("bob")
    )

    assert response.status_code == 404


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({}, ["book_id", "file_id"]),
        ({"book_id": "", "file_id": "f"}, ["book_id"]),
        ({"book_id": "b", "file_id": "f", "extra": 1}, ["extra"]),
        ({"book_id": 5, "file_id": "f"}, ["book_id"]),
        ([1, 2], ["body"]),
    ],
)
async def test_create_job_with_invalid_body_is_422_naming_each_field(
    client, auth_headers, body, fields
):
    response = await client.post(JOBS, json=body, headers=auth_headers("alice"))

    assert response.status_code == 422
    assert [error["field"] for error in response.json()["errors"]] == fields


async def test_create_job_with_broken_json_is_422(client, auth_headers):
    response = await client.post(
        JOBS,
        content=b"{nope",
        headers={**auth_headers("alice"), "Content-Type": "application/json"},
    )

    assert response.status_code == 422
    assert response.json()["detail"] == "Request body must be JSON"


async def test_idempotency_key_replays_the_original_job(collections, client, auth_headers, file_id):
    headers = {**auth_headers("alice"), "Idempotency-Key": "k-1"}
    body = {"book_id": "b", "file_id": file_id}

    first = await client.post(JOBS, json=body, headers=headers)
    second = await client.post(JOBS, json=body, headers=headers)

    assert first.status_code == second.status_code == 202
    assert second.json()["job_id"] == first.json()["job_id"]
    assert await collections.jobs.count_documents({}) == 1


async def test_idempotency_key_with_another_body_is_422(collections, client, auth_headers, file_id):
    headers = {**auth_headers("alice"), "Idempotency-Key": "k-2"}
    await client.post(JOBS, json={"book_id": "b", "file_id": file_id}, headers=headers)

    response = await client.post(
        JOBS, json={"book_id": "other", "file_id": file_id}, headers=headers
    )

    assert response.status_code == 422
    assert (
        response.json()["detail"]
        == "Idempotency-Key was already used with a different request body"
    )
    assert await collections.jobs.count_documents({}) == 1


async def test_multipart_create_uploads_and_creates_in_one_request(
    collections, client, auth_headers
):
    response = await client.post(
        JOBS,
        data={"book_id": "book_9"},
        files={"file": ("one.pdf", text_pdf(1), "application/pdf")},
        headers=auth_headers("alice"),
    )

    assert response.status_code == 202
    job = await collections.jobs.find_one({"job_id": response.json()["job_id"]})
    assert job["book_id"] == "book_9"


async def test_create_job_with_redis_down_is_still_202(
    collections, settings, other_app, cert_server, file_id
):
    no_redis = settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"})
    headers = {"Authorization": f"Bearer {cert_server.token('alice')}"}

    async with other_app(no_redis) as client:
        response = await client.post(
            JOBS, json={"book_id": "b", "file_id": file_id}, headers=headers
        )

    assert response.status_code == 202
    stored = await collections.jobs.find_one({"job_id": response.json()["job_id"]})
    assert stored["status"] == "pending"


async def test_list_jobs_newest_first_with_cursor(client, auth_headers, job_factory):
    from datetime import timedelta

    from service.domain.job import utcnow

    base = utcnow()
    made = [await job_factory(created_at=base - timedelta(seconds=i)) for i in range(5)]
    await job_factory(user_id="bob")

    first = await client.get(JOBS, params={"limit": 2}, headers=auth_headers("alice"))
    second = await client.get(
        JOBS,
        params={"limit": 2, "cursor": first.json()["next_cursor"]},
        headers=auth_headers("alice"),
    )
    third = await client.get(
        JOBS,
        params={"limit": 2, "cursor": second.json()["next_cursor"]},
        headers=auth_headers("alice"),
    )

    ids = [job["job_id"] for page in (first, second, third) for job in page.json()["items"]]
    assert ids == [job.job_id for job in made]
    assert third.json()["next_cursor"] is None


async def test_list_jobs_filters_by_status(client, auth_headers, job_factory):
    await job_factory(status=JobStatus.failed, error="x")
    pending = await job_factory()

    response = await client.get(JOBS, params={"status": "pending"}, headers=auth_headers("alice"))

    assert [job["job_id"] for job in response.json()["items"]] == [pending.job_id]


@pytest.mark.parametrize(
    "params", [{"status": "bogus"}, {"limit": 0}, {"limit": 101}, {"cursor": "%%%"}]
)
async def test_list_jobs_with_bad_parameters_is_400(client, auth_headers, params):
    response = await client.get(JOBS, params=params, headers=auth_headers("alice"))

    assert response.status_code == 400
    assert "detail" in response.json()


async def test_cancel_pending_job_at_once(client, auth_headers, job_factory):
    job = await job_factory()

    response = await client.post(f"{JOBS}/{job.job_id}/cancel", headers=auth_headers("alice"))

    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert response.json()["cancelled_at"].endswith("Z")


async def test_cancel_finished_job_is_409(client, auth_headers, job_factory):
    job = await job_factory(status=JobStatus.completed, progress=100)

    response = await client.post(f"{JOBS}/{job.job_id}/cancel", headers=auth_headers("alice"))

    assert response.status_code == 409
    assert response.json() == {
        "detail": f"Job {job.job_id} is already completed and cannot be cancelled"
    }


async def test_cancel_another_users_job_is_403(collections, client, auth_headers, job_factory):
    job = await job_factory(user_id="alice")

    response = await client.post(f"{JOBS}/{job.job_id}/cancel", headers=auth_headers("bob"))

    assert response.status_code == 403
    assert (await collections.jobs.find_one({"job_id": job.job_id}))["status"] == "pending"


async def test_delete_job_is_204_then_404(client, auth_headers, job_factory):
    job = await job_factory(status=JobStatus.processing, progress=40)

    deleted = await client.delete(f"{JOBS}/{job.job_id}", headers=auth_headers("alice"))
    polled = await client.get(f"{JOBS}/{job.job_id}", headers=auth_headers("alice"))

    assert deleted.status_code == 204
    assert polled.status_code == 404


async def test_multipart_create_without_book_id_is_422_and_keeps_no_upload(
    client, auth_headers, app
):
    response = await client.post(
        JOBS,
        files={"file": ("one.pdf", text_pdf(1), "application/pdf")},
        headers=auth_headers("alice"),
    )

    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["book_id"]
    assert await app.state.services.store.collections.db["pdf_files.files"].count_documents({}) == 0
    assert (
        await app.state.services.store.collections.db["pdf_files.chunks"].count_documents({}) == 0
    )
