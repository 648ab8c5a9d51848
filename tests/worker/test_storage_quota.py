"""Every byte a user stores is theirs and counts against STORAGE_QUOTA_MB, on both page stores:
page images and thumbnails, a pdf_file chapter's copy of its PDF, each page's text. A job that
would pass the quota fails before rendering (an estimate) or at the page that does not fit, and
keeps nothing; deleting a chapter, a failed job's output or a file gives back what it took."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from service.domain.page_keys import chapter_prefix, page_key, thumbnail_key
from tests.support.pdfs import amplification_pdf, book_pdf, text_pdf
from tests.worker.conftest import Backend

JOBS = "/api/v1/books/jobs"
SMALL = {"page_max_pixels": 1_000_000}  # four noisy pages of about 500 KB each, rendered fast
MB = 1024 * 1024


@pytest.fixture
def owner() -> str:
    """A user of this test alone: a test without the app fixture (the nginx tests) leaves its
    uploads to the next clean-up, and these tests count every byte of their user."""
    return f"alice-{uuid.uuid4().hex}"


async def _create(
    backend: Backend, auth_headers: Any, owner: str, data: bytes, **options: Any
) -> dict:
    alice = auth_headers(owner)
    uploaded = await backend.api.post(
        "/api/v1/files", files={"file": ("a.pdf", data, "application/pdf")}, headers=alice
    )
    assert uploaded.status_code == 201, uploaded.text
    created = await backend.api.post(
        JOBS, json={"book_id": "b", "file_id": uploaded.json()["file_id"], **options},
        headers=alice,
    )  # fmt: skip
    assert created.status_code == 202, created.text
    return {**created.json(), "file_id": uploaded.json()["file_id"]}


async def _job(backend: Backend, job_id: str) -> dict[str, Any]:
    found = await backend.data.collections.jobs.find_one({"job_id": job_id})
    assert found is not None
    return found


async def _image_bytes(backend: Backend, chapter_id: str, pages: int) -> int:
    """What the page store itself says its images of the chapter take."""
    total = 0
    for number in range(1, pages + 1):
        for key in (page_key(chapter_id, number), thumbnail_key(chapter_id, number)):
            image = await backend.store.open(key)
            assert image is not None, key
            total += image.length
    return total


async def _text_bytes(backend: Backend, job_id: str) -> int:
    """What the chapter's page documents store of text: content, warnings, positioned words."""
    pages = backend.data.collections.pages.find({"job_id": job_id})
    return sum(
        [
            len(page["content"].encode())
            + sum(len(w.encode()) for w in page["warnings"])
            + len(page["words"])
            async for page in pages
        ]
    )


async def test_page_images_of_a_small_pdf_count_exactly_and_a_chapter_delete_gives_them_back(
    backend, auth_headers, run_worker, owner
):
    data = amplification_pdf(4)  # 124 KB that render to about 2 MB
    job = await _create(backend, auth_headers, owner, data)
    await run_worker(**backend.overrides, **SMALL)
    stored = await _job(backend, job["job_id"])
    chapter_id = stored["result"]["chapter_id"]
    images = await _image_bytes(backend, chapter_id, 4)
    text = await _text_bytes(backend, job["job_id"])
    counted = await backend.data.usage.stored_bytes(owner)

    deleted = await backend.api.delete(
        f"/api/v1/books/b/chapters/{chapter_id}", headers=auth_headers(owner)
    )

    assert stored["status"] == "completed"
    assert images > 10 * len(data)
    assert counted == len(data) + images + text
    assert deleted.status_code == 204
    assert await backend.data.usage.stored_bytes(owner) == len(data)
    assert await backend.images(chapter_id) == 0


async def test_a_job_that_would_pass_the_quota_fails_and_keeps_nothing(
    backend, auth_headers, run_worker, owner
):
    data = amplification_pdf(4)  # passes the estimate (noise is 40 times a text page's bytes)
    job = await _create(backend, auth_headers, owner, data)

    await run_worker(**backend.overrides, **SMALL, storage_quota_mb=1)

    stored = await _job(backend, job["job_id"])
    assert stored["status"] == "failed"
    assert stored["error_code"] == "STORAGE_QUOTA_EXCEEDED"
    assert stored["error"].startswith("Storage quota exceeded: ")
    assert stored["error"].endswith("delete files or chapters to make room")
    assert await backend.data.usage.stored_bytes(owner) == len(data)  # the upload alone
    assert await backend.images(stored["chapter_id"]) == 0
    assert await backend.data.usage.held(chapter_prefix(stored["chapter_id"])) == 0
    assert await backend.data.collections.pages.count_documents({"job_id": job["job_id"]}) == 0


async def test_a_job_whose_estimate_cannot_fit_fails_before_rendering(
    backend, auth_headers, run_worker, owner
):
    # 60 A4 pages: 2.2 million pixels each, at least 33 KB of image each: 2 MB, past 1 MB.
    data = text_pdf(60, words=1)
    job = await _create(backend, auth_headers, owner, data)

    await run_worker(**backend.overrides, storage_quota_mb=1)

    stored = await _job(backend, job["job_id"])
    assert stored["status"] == "failed"
    assert stored["error_code"] == "STORAGE_QUOTA_EXCEEDED"
    assert "this chapter needs about 1.9 MB more" in stored["error"]
    assert stored["pages_processed"] == 0
    assert await backend.images(stored["chapter_id"]) == 0
    assert await backend.data.usage.stored_bytes(owner) == len(data)


async def test_a_copied_pdf_still_counts_once_its_upload_is_deleted(
    backend, auth_headers, run_worker, owner
):
    data = text_pdf(3)
    job = await _create(backend, auth_headers, owner, data, content_mode="pdf_file")
    await run_worker(**backend.overrides)
    stored = await _job(backend, job["job_id"])
    chapter_id = stored["result"]["chapter_id"]
    text = await _text_bytes(backend, job["job_id"])

    upload_deleted = await backend.api.delete(
        f"/api/v1/files/{job['file_id']}", headers=auth_headers(owner)
    )
    after_upload = await backend.data.usage.stored_bytes(owner)
    chapter_deleted = await backend.api.delete(
        f"/api/v1/books/b/chapters/{chapter_id}", headers=auth_headers(owner)
    )

    assert stored["status"] == "completed"
    assert upload_deleted.status_code == 204
    assert after_upload == len(data) + text  # the copy, not the upload: no way round the quota
    assert chapter_deleted.status_code == 204
    assert await backend.data.usage.stored_bytes(owner) == 0
    assert await backend.images(chapter_id) == 0


async def test_a_job_whose_text_would_pass_the_quota_fails_and_keeps_nothing(
    backend, auth_headers, run_worker, owner
):
    # 182 KB of PDF, stored twice (the upload, and the chapter's copy), and 737 KB of text: the
    # estimate (the copy) fits 1 MB, the text does not.
    data = book_pdf(400)
    job = await _create(backend, auth_headers, owner, data, content_mode="pdf_file")

    await run_worker(**backend.overrides, storage_quota_mb=1)

    stored = await _job(backend, job["job_id"])
    assert stored["status"] == "failed"
    assert stored["error_code"] == "STORAGE_QUOTA_EXCEEDED"
    assert "does not fit" in stored["error"]  # without the text, 364 KB would have
    assert await backend.data.usage.stored_bytes(owner) == len(data)
    assert await backend.images(stored["chapter_id"]) == 0
    assert await backend.data.collections.pages.count_documents({"job_id": job["job_id"]}) == 0
