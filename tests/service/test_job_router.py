"""The generic job router and the job detail: /api/v1/jobs create, list, get (with stages),
delete, per-document lists."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from service.domain.job import JobStatus
from service.store.documents import JobResult
from tests.support.pdfs import encrypted_pdf, text_pdf

JOBS = "/api/v1/jobs"
ISO_MS_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
CREATED = datetime(2026, 2, 8, 0, 10, 28, 325000, tzinfo=UTC)
PENDING_STAGES = [
    {"id": "stage_1", "stageName": "download_pdf", "status": "pending", "percentComplete": 0},
    {"id": "stage_2", "stageName": "extract_pages", "status": "pending", "percentComplete": 0},
    {"id": "stage_3", "stageName": "create_chapter", "status": "pending", "percentComplete": 0},
    {"id": "stage_4", "stageName": "index_vectors", "status": "pending", "percentComplete": 0},
]


@pytest.fixture
def create(client, auth_headers, upload):
    """``await create(pdf_bytes)``: upload a PDF and POST /api/v1/jobs for it; the response."""

    async def send(data, user_id="alice", title="Chapter 1", **headers):
        uploaded = await upload(data, user_id=user_id)
        assert uploaded.status_code == 201, uploaded.text
        body = {
            "title": title,
            "payload": {"book_id": "book_1", "file_id": uploaded.json()["file_id"]},
        }
        return await client.post(JOBS, json=body, headers={**auth_headers(user_id), **headers})

    return send


async def test_create_answers_201_with_the_pending_job(create):
    response = await create(text_pdf(2), title="Triple Roundhouse Compliance Report")

    assert response.status_code == 201
    body = response.json()
    assert response.headers["location"] == f"{JOBS}/{body['id']}"
    assert uuid.UUID(body["id"]).version == 4
    assert body == {
        "id": body["id"],
        "title": "Triple Roundhouse Compliance Report",
        "documentId": body["documentId"],
        "jobType": "pdf_chapter",
        "status": "pending",
        "progressPercent": 0,
        "errorCode": None,
        "errorMessage": None,
        "createdAt": body["createdAt"],
        "startedAt": None,
        "completedAt": None,
        "stages": PENDING_STAGES,
        "repaired": False,
    }
    assert ISO_MS_Z.match(body["createdAt"])


async def test_created_job_is_the_same_job_seed_002_polls(
    collections, create, client, auth_headers
):
    created = (await create(text_pdf(1))).json()

    polled = await client.get(f"/api/v1/books/jobs/{created['id']}", headers=auth_headers("alice"))

    assert polled.status_code == 200
    assert polled.json()["status"] == "pending"
    assert await collections.jobs.count_documents({}) == 1


@pytest.mark.parametrize(
    ("body", "problems"),
    [
        (
            {"payload": {"book_id": "b"}},
            [
                {"field": "title", "message": "required"},
                {"field": "payload.file_id", "message": "required"},
            ],
        ),
        (
            {"title": "t", "payload": "file"},
            [{"field": "payload", "message": "must be an object"}],
        ),
        (
            {"title": 7, "payload": {"book_id": "b", "file_id": "f", "priority": "HIGH"}},
            [
                {"field": "title", "message": "Expected `str`, got `int`"},
                {"field": "payload.priority", "message": "unknown field"},
            ],
        ),
        (
            {"title": "x" * 201, "payload": {"book_id": "", "file_id": "f"}, "extra": 1},
            [
                {"field": "title", "message": "Expected `str` of length <= 200"},
                {"field": "payload.book_id", "message": "required"},
                {"field": "extra", "message": "unknown field"},
            ],
        ),
    ],
)
async def test_create_with_a_bad_payload_is_422_naming_each_field(
    collections, client, auth_headers, body, problems
):
    response = await client.post(JOBS, json=body, headers=auth_headers("alice"))

    assert response.status_code == 422
    assert response.json() == {"detail": "Invalid request body", "errors": problems}
    assert await collections.jobs.count_documents({}) == 0


async def test_create_for_another_users_file_is_404(client, auth_headers, upload):
    file_id = (await upload(text_pdf(1), user_id="bob")).json()["file_id"]

    response = await client.post(
        JOBS,
        json={"title": "t", "payload": {"book_id": "b", "file_id": file_id}},
        headers=auth_headers("alice"),
    )

    assert response.status_code == 404
    assert response.json() == {"detail": f"File {file_id} not found"}


async def test_create_is_idempotent_with_the_same_key(collections, create, client, auth_headers):
    first = await create(text_pdf(1), **{"Idempotency-Key": "k-1"})
    body = {
        "title": "Chapter 1",
        "payload": {"book_id": "book_1", "file_id": first.json()["documentId"]},
    }

    again = await client.post(
        JOBS, json=body, headers={**auth_headers("alice"), "Idempotency-Key": "k-1"}
    )
    other_title = await client.post(
        JOBS,
        json={**body, "title": "Other"},
        headers={**auth_headers("alice"), "Idempotency-Key": "k-1"},
    )

    assert again.status_code == 201
    assert again.json()["id"] == first.json()["id"]
    assert other_title.status_code == 422
    assert await collections.jobs.count_documents({}) == 1


async def test_list_returns_only_the_callers_jobs_newest_first(client, job_factory, auth_headers):
    older = await job_factory(created_at=CREATED)
    newer = await job_factory(created_at=CREATED + timedelta(seconds=5), title="Newer")
    await job_factory(user_id="bob")

    response = await client.get(JOBS, headers=auth_headers("alice"))

    assert response.status_code == 200
    assert [job["id"] for job in response.json()] == [newer.job_id, older.job_id]
    assert response.json()[0]["title"] == "Newer"


async def test_list_filters_by_status_and_pages_with_limit_and_offset(
    client, job_factory, auth_headers
):
    jobs = [
        await job_factory(created_at=CREATED + timedelta(seconds=n), status=status)
        for n, status in enumerate([JobStatus.pending, JobStatus.failed, JobStatus.pending])
    ]

    pending = await client.get(JOBS, params={"status": "pending"}, headers=auth_headers("alice"))
    second = await client.get(JOBS, params={"limit": 1, "offset": 1}, headers=auth_headers("alice"))
    bad = await client.get(JOBS, params={"limit": 0}, headers=auth_headers("alice"))

    assert [job["id"] for job in pending.json()] == [jobs[2].job_id, jobs[0].job_id]
    assert [job["id"] for job in second.json()] == [jobs[1].job_id]
    assert bad.status_code == 400
    assert "limit" in bad.text


async def test_get_of_a_completed_job_shows_every_stage_done(
    create, client, auth_headers, run_worker, index_chapters
):
    job_id = (await create(text_pdf(3))).json()["id"]

    await run_worker()
    ready = (await client.get(f"{JOBS}/{job_id}", headers=auth_headers("alice"))).json()
    await index_chapters()
    body = (await client.get(f"{JOBS}/{job_id}", headers=auth_headers("alice"))).json()

    assert body["status"] == "completed"
    assert body["progressPercent"] == 100
    assert body["errorCode"] is None
    assert body["errorMessage"] is None
    assert ISO_MS_Z.match(body["startedAt"])
    assert ISO_MS_Z.match(body["completedAt"])
    assert body["startedAt"] <= body["completedAt"]
    assert [(s["stageName"], s["status"], s["percentComplete"]) for s in body["stages"]] == [
        ("download_pdf", "completed", 100),
        ("extract_pages", "completed", 100),
        ("create_chapter", "completed", 100),
        ("index_vectors", "completed", 100),
    ]
    # The job completed with its chapter, before its search index: the reader never waits.
    assert ready["status"] == "completed"
    assert ready["stages"][3]["status"] == "pending"


async def test_get_of_a_failed_job_has_its_error_code_and_the_failed_stage(
    create, client, auth_headers, run_worker
):
    job_id = (await create(encrypted_pdf())).json()["id"]

    await run_worker()
    body = (await client.get(f"{JOBS}/{job_id}", headers=auth_headers("alice"))).json()

    assert body["status"] == "failed"
    assert body["errorCode"] == "PDF_ENCRYPTED"
    assert body["errorMessage"] == "PDF is encrypted"
    assert ISO_MS_Z.match(body["completedAt"])
    assert [(s["stageName"], s["status"]) for s in body["stages"]] == [
        ("download_pdf", "completed"),
        ("extract_pages", "failed"),
        ("create_chapter", "skipped"),
        ("index_vectors", "skipped"),
    ]


async def test_cancelled_job_shows_cancelled_code_and_stages(create, client, auth_headers):
    job_id = (await create(text_pdf(1))).json()["id"]

    cancelled = await client.post(
        f"/api/v1/books/jobs/{job_id}/cancel", headers=auth_headers("alice")
    )
    body = (await client.get(f"{JOBS}/{job_id}", headers=auth_headers("alice"))).json()

    assert cancelled.status_code == 200
    assert body["status"] == "cancelled"
    assert body["errorCode"] == "CANCELLED"
    assert body["errorMessage"] == "Job cancelled"
    assert {s["status"] for s in body["stages"]} == {"cancelled"}


async def test_get_of_a_job_stored_before_stages_existed_shows_them_pending(
    collections, client, job_factory, auth_headers
):
    job = await job_factory(
        status=JobStatus.completed,
        progress=100,
        result=JobResult(chapter_id="c", total_pages=1),
        completed_at=CREATED,
    )
    await collections.jobs.update_one({"job_id": job.job_id}, {"$unset": {"stages": ""}})

    body = (await client.get(f"{JOBS}/{job.job_id}", headers=auth_headers("alice"))).json()

    assert body["status"] == "completed"
    assert body["stages"] == PENDING_STAGES


@pytest.mark.parametrize("job_id", ["not-a-uuid", "6f1c2e0a-5b7d-4f3e-9a21-0c8d4e2b7f10"])
async def test_get_of_a_missing_job_is_404(client, auth_headers, job_id):
    response = await client.get(f"{JOBS}/{job_id}", headers=auth_headers("alice"))

    assert response.status_code == 404
    assert response.json() == {"detail": f"Job {job_id} not found"}


async def test_another_users_job_is_404_for_get_and_delete(
    collections, client, job_factory, auth_headers
):
    job = await job_factory(user_id="alice")

    got = await client.get(f"{JOBS}/{job.job_id}", headers=auth_headers("bob"))
    deleted = await client.delete(f"{JOBS}/{job.job_id}", headers=auth_headers("bob"))

    assert got.status_code == 404
    assert got.json() == {"detail": f"Job {job.job_id} not found"}
    assert deleted.status_code == 404
    assert deleted.json() == {"detail": f"Job {job.job_id} not found"}
    assert await collections.jobs.count_documents({}) == 1


async def test_every_endpoint_requires_a_token(collections, client, job_factory):
    job = await job_factory()

    answers = [
        await client.get(JOBS),
        await client.post(JOBS, json={}),
        await client.get(f"{JOBS}/{job.job_id}"),
        await client.delete(f"{JOBS}/{job.job_id}"),
        await client.get(f"{JOBS}/document/{job.file_id}"),
    ]

    assert [a.status_code for a in answers] == [401] * 5
    assert {a.json()["detail"] for a in answers} == {"Could not validate credentials"}
    assert await collections.jobs.count_documents({}) == 1


async def test_delete_removes_the_job_and_keeps_its_chapter(
    collections, create, client, auth_headers, run_worker
):
    job_id = (await create(text_pdf(2))).json()["id"]
    await run_worker()

    deleted = await client.delete(f"{JOBS}/{job_id}", headers=auth_headers("alice"))
    again = await client.get(f"{JOBS}/{job_id}", headers=auth_headers("alice"))

    assert deleted.status_code == 204
    assert deleted.content == b""
    assert again.status_code == 404
    assert await collections.pages.count_documents({"job_id": job_id}) == 2


async def test_document_lists_its_jobs_newest_first_with_a_limit(create, client, auth_headers):
    first = (await create(text_pdf(1))).json()
    body = {"title": "again", "payload": {"book_id": "book_1", "file_id": first["documentId"]}}
    later = [
        (await client.post(JOBS, json=body, headers=auth_headers("alice"))).json() for _ in range(2)
    ]

    listed = await client.get(
        f"{JOBS}/document/{first['documentId']}", headers=auth_headers("alice")
    )
    limited = await client.get(
        f"{JOBS}/document/{first['documentId']}", params={"limit": 1}, headers=auth_headers("alice")
    )

    assert listed.status_code == 200
    assert [job["id"] for job in listed.json()] == [later[1]["id"], later[0]["id"], first["id"]]
    assert all(job["documentId"] == first["documentId"] for job in listed.json())
    assert [job["id"] for job in limited.json()] == [later[1]["id"]]


async def test_document_of_another_user_or_unknown_is_404(create, client, auth_headers):
    document_id = (await create(text_pdf(1), user_id="alice")).json()["documentId"]

    theirs = await client.get(f"{JOBS}/document/{document_id}", headers=auth_headers("bob"))
    unknown = await client.get(f"{JOBS}/document/nope", headers=auth_headers("alice"))

    assert theirs.status_code == 404
    assert theirs.json() == {"detail": f"File {document_id} not found"}
    assert unknown.status_code == 404


async def test_corrupt_job_is_500_with_a_request_id_and_no_internals(
    collections, client, job_factory, auth_headers
):
    job = await job_factory()
    await collections.jobs.update_one({"job_id": job.job_id}, {"$set": {"status": "exploded"}})

    response = await client.get(
        f"{JOBS}/{job.job_id}", headers={**auth_headers("alice"), "X-Request-ID": "req-7"}
    )

    assert response.status_code == 500
    assert response.json() == {
        "detail": "Failed to get job status: internal error (request id req-7)",
        "request_id": "req-7",
    }
    assert "ValueError" not in response.text


@pytest.mark.parametrize(
    ("content", "headers", "detail", "problems"),
    [
        (
            b"{not json",
            {},
            "Request body must be JSON",
            [{"field": "body", "message": "invalid JSON"}],
        ),
        (b"", {}, "Request body must be JSON", [{"field": "body", "message": "invalid JSON"}]),
        (
            b'[{"title": "t"}]',
            {},
            "Request body must be a JSON object",
            [{"field": "body", "message": "not an object"}],
        ),
        (
            b'{"title": "t", "payload": {"book_id": "b", "file_id": "f"}}',
            {"Idempotency-Key": "k" * 256},
            "Invalid Idempotency-Key",
            [{"field": "Idempotency-Key", "message": "1 to 255 characters"}],
        ),
    ],
)
async def test_create_with_a_bad_body_or_key_is_422_and_stores_nothing(
    collections, client, auth_headers, content, headers, detail, problems
):
    response = await client.post(
        JOBS,
        content=content,
        headers={**auth_headers("alice"), "Content-Type": "application/json", **headers},
    )

    assert response.status_code == 422
    assert response.json() == {"detail": detail, "errors": problems}
    assert await collections.jobs.count_documents({}) == 0
