"""Per-user caps and quotas: active jobs, job creations a minute, stored bytes (issue 13, item 3).

Each refusal is a clear JSON 4xx, and nothing the refused request would have written is kept.
"""

from __future__ import annotations

import asyncio

from service.domain.job import JobStatus
from tests.support.pdfs import text_pdf

BOOK_JOBS = "/api/v1/books/jobs"
MB = 1024 * 1024


def _blob(size: int) -> bytes:
    """Bytes an upload accepts (the PDF header, then filler): storage is what is measured."""
    return b"%PDF-1.7\n" + b"x" * (size - 9)


async def _jobs(db, **query):
    return await db["pdf_chapter_jobs"].count_documents({"user_id": "alice", **query})


async def _stored(db):
    return (
        await db["pdf_files.files"].count_documents({}),
        await db["pdf_files.chunks"].count_documents({}),
    )


async def _create(client, headers, file_id):
    return await client.post(
        BOOK_JOBS, json={"book_id": "book_1", "file_id": file_id}, headers=headers
    )


# --- Active jobs ---------------------------------------------------------------------------


async def test_eleventh_active_job_is_429_and_not_stored(
    client, auth_headers, upload, job_factory, db
):
    file_id = (await upload(text_pdf(1))).json()["file_id"]
    for n in range(10):
        await job_factory(status=JobStatus.pending if n % 2 else JobStatus.processing)

    response = await _create(client, auth_headers("alice"), file_id)

    assert response.status_code == 429
    assert response.headers["retry-after"] == "30"
    assert response.json() == {
        "detail": "Too many active jobs: at most 10 pending or processing per user "
        "(MAX_ACTIVE_JOBS_PER_USER); wait for one to finish or cancel one"
    }
    assert await _jobs(db) == 10


async def test_finished_jobs_do_not_count_against_the_cap(
    client, auth_headers, upload, job_factory, db
):
    file_id = (await upload(text_pdf(1))).json()["file_id"]
    for status in (JobStatus.completed, JobStatus.failed, JobStatus.cancelled) * 4:
        await job_factory(status=status)
    for _ in range(9):
        await job_factory()

    response = await _create(client, auth_headers("alice"), file_id)

    assert response.status_code == 202
    assert await _jobs(db, status={"$in": ["pending", "processing"]}) == 10


async def test_cap_is_per_user(client, auth_headers, upload, job_factory):
    file_id = (await upload(text_pdf(1), user_id="bob")).json()["file_id"]
    for _ in range(10):
        await job_factory()  # alice's

    response = await _create(client, auth_headers("bob"), file_id)

    assert response.status_code == 202


async def test_seed_003_create_is_capped_too(client, auth_headers, upload, job_factory, db):
    file_id = (await upload(text_pdf(1))).json()["file_id"]
    for _ in range(10):
        await job_factory()

    response = await client.post(
        "/api/v1/jobs",
        json={"title": "Ch 1", "payload": {"book_id": "b", "file_id": file_id}},
        headers=auth_headers("alice"),
    )

    assert response.status_code == 429
    assert "MAX_ACTIVE_JOBS_PER_USER" in response.json()["detail"]
    assert await _jobs(db) == 10


async def test_multipart_create_at_the_cap_stores_no_upload(client, auth_headers, job_factory, db):
    for _ in range(10):
        await job_factory()

    response = await client.post(
        BOOK_JOBS,
        data={"book_id": "book_1"},
        files={"file": ("a.pdf", text_pdf(2), "application/pdf")},
        headers=auth_headers("alice"),
    )

    assert response.status_code == 429
    assert await _stored(db) == (0, 0)
    assert await _jobs(db) == 10


async def test_cap_holds_across_two_api_processes_racing(
    client, other_app, settings, auth_headers, upload, job_factory, db
):
    file_id = (await upload(text_pdf(1))).json()["file_id"]
    for _ in range(8):
        await job_factory()
    alice = auth_headers("alice")

    async with other_app(settings) as second:
        answers = await asyncio.gather(
            *[_create(client if n % 2 else second, alice, file_id) for n in range(12)]
        )

    statuses = sorted(answer.status_code for answer in answers)
    created = statuses.count(202)
    assert set(statuses) <= {202, 429}
    assert created <= 2  # racing creations may all back off; never more than the slots
    assert await _jobs(db) == 8 + created  # never past 10; a refused creation left no job


# --- Job creations per minute --------------------------------------------------------------


async def test_job_creations_past_the_rate_are_429(other_app, settings, auth_headers, upload, db):
    file_id = (await upload(text_pdf(1))).json()["file_id"]
    limited = settings.model_copy(update={"job_creations_per_minute": 3})
    alice = auth_headers("alice")

    async with other_app(limited) as client:
        answers = [await _create(client, alice, file_id) for _ in range(4)]
        bob_file = (
            await client.post(
                "/api/v1/files",
                files={"file": ("b.pdf", text_pdf(1), "application/pdf")},
                headers=auth_headers("bob"),
            )
        ).json()["file_id"]
        bob = await _create(client, auth_headers("bob"), bob_file)

    refused = answers[-1]
    assert [answer.status_code for answer in answers] == [202, 202, 202, 429]
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.headers["ratelimit-remaining"] == "0"
    assert refused.json() == {"detail": "Rate limit exceeded: 3 job creations per 60 seconds"}
    assert await _jobs(db) == 3
    assert bob.status_code == 202  # a window per verified user


async def test_invalid_creation_is_not_counted(other_app, settings, auth_headers, upload):
    file_id = (await upload(text_pdf(1))).json()["file_id"]
    limited = settings.model_copy(update={"job_creations_per_minute": 1})
    alice = auth_headers("alice")

    async with other_app(limited) as client:
        invalid = await client.post(BOOK_JOBS, json={"book_id": ""}, headers=alice)
        valid = await _create(client, alice, file_id)

    assert invalid.status_code == 422
    assert valid.status_code == 202


async def test_job_creation_goes_on_while_redis_is_down(other_app, settings, auth_headers, upload):
    file_id = (await upload(text_pdf(1))).json()["file_id"]
    unreachable = settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"})

    async with other_app(unreachable) as client:
        response = await _create(client, auth_headers("alice"), file_id)

    assert response.status_code == 202  # the limit fails open; the sweeper rings the job later


# --- Stored bytes ----------------------------------------------------------------------------


async def test_used_bytes_sums_uploads_and_page_images_of_one_user(store, upload):
    first = text_pdf(2)
    second = text_pdf(5)
    await upload(first)
    await upload(second)
    await upload(text_pdf(1), user_id="bob")
    await store.images.put("chapters/c-a/page-1.webp", b"a" * 1000, "image/webp", owner="alice")
    await store.images.put("chapters/c-b/page-1.webp", b"b" * 7, "image/webp", owner="bob")

    assert await store.usage.stored_bytes("alice") == len(first) + len(second) + 1000


async def test_upload_that_does_not_fit_is_413_and_stores_nothing(
    other_app, settings, auth_headers, db
):
    one_mb = settings.model_copy(update={"storage_quota_mb": 1})
    files = {"file": ("big.pdf", _blob(700 * 1024), "application/pdf")}
    alice = auth_headers("alice")

    async with other_app(one_mb) as client:
        first = await client.post("/api/v1/files", files=files, headers=alice)
        before = await _stored(db)
        second = await client.post("/api/v1/files", files=files, headers=alice)

    assert first.status_code == 201
    assert second.status_code == 413
    detail = second.json()["detail"]
    assert detail.startswith("Storage quota exceeded: 0.7 MB of the 1 MB allowed per user")
    assert "STORAGE_QUOTA_MB" in detail
    assert await _stored(db) == before  # the refused upload left no file and no chunk


async def test_full_quota_refuses_before_the_body_and_counts_page_images(
    other_app, settings, auth_headers, db, store
):
    one_mb = settings.model_copy(update={"storage_quota_mb": 1})
    await store.images.put("chapters/c-a/page-1.webp", b"p" * MB, "image/webp", owner="alice")
    files = {"file": ("a.pdf", text_pdf(1), "application/pdf")}

    async with other_app(one_mb) as client:
        alice = await client.post("/api/v1/files", files=files, headers=auth_headers("alice"))
        bob = await client.post("/api/v1/files", files=files, headers=auth_headers("bob"))

    assert alice.status_code == 413
    assert alice.json()["detail"].startswith("Storage quota exceeded: 1.0 MB of the 1 MB")
    assert bob.status_code == 201
    assert await db["pdf_files.files"].count_documents({"metadata.user_id": "alice"}) == 0


async def test_quota_holds_when_uploads_race_in_two_api_processes(
    store, client, other_app, settings, auth_headers, db
):
    # Room for four uploads at once: the quota, not the upload slots, is what is tested.
    one_mb = settings.model_copy(
        update={"storage_quota_mb": 1, "max_concurrent_uploads_per_user": 4}
    )
    files = {"file": ("big.pdf", _blob(600 * 1024), "application/pdf")}
    alice = auth_headers("alice")

    async with other_app(one_mb) as first, other_app(one_mb) as second:
        answers = await asyncio.gather(
            *[
                (first if n % 2 else second).post("/api/v1/files", files=files, headers=alice)
                for n in range(4)
            ]
        )

    statuses = sorted(answer.status_code for answer in answers)
    kept = statuses.count(201)
    assert set(statuses) <= {201, 413}
    assert kept <= 1
    assert await store.usage.stored_bytes("alice") == kept * 600 * 1024
    # Undone uploads leave no chunks: only the kept file's.
    chunks = await db["pdf_files.chunks"].count_documents({})
    assert chunks == kept * 3  # 600 KB in 255 KB chunks


async def test_multipart_create_past_the_quota_is_413_and_keeps_nothing(
    other_app, settings, auth_headers, db
):
    one_mb = settings.model_copy(update={"storage_quota_mb": 1})

    async with other_app(one_mb) as client:
        response = await client.post(
            BOOK_JOBS,
            data={"book_id": "book_1"},
            files={"file": ("big.pdf", _blob(MB + 1), "application/pdf")},
            headers=auth_headers("alice"),
        )

    assert response.status_code == 413
    assert "STORAGE_QUOTA_MB" in response.json()["detail"]
    assert await _stored(db) == (0, 0)
    assert await _jobs(db) == 0
