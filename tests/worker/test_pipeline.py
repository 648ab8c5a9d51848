"""The worker end to end: upload, create, process page by page, and every bad input."""

from __future__ import annotations

import pymupdf
import pytest

from tests.support.pdfs import (
    encrypted_pdf,
    garbage_after_header,
    memory_bomb_pdf,
    sized_page_pdf,
    text_pdf,
    truncated_pdf,
    zero_page_pdf,
)

JOBS = "/api/v1/books/jobs"


async def _job(collections, job_id):
    return await collections.jobs.find_one({"job_id": job_id})


async def _poll(client, auth_headers, job_id, user_id="alice"):
    response = await client.get(f"{JOBS}/{job_id}", headers=auth_headers(user_id))
    assert response.status_code == 200
    return response.json()


async def test_job_runs_to_completed_with_its_chapter(
    collections, client, auth_headers, submit, run_worker
):
    job = await submit(text_pdf(12, title="The Sea"), filename="sea.pdf")

    await run_worker()

    body = await _poll(client, auth_headers, job["job_id"])
    assert body["status"] == "completed"
    assert body["progress"] == 100
    assert body["message"] == "Chapter created successfully with 12 pages"
    assert body["result"]["total_pages"] == 12
    assert body["completed_at"].endswith("Z")
    assert "error" not in body
    chapter = await collections.chapters.find_one({"chapter_id": body["result"]["chapter_id"]})
    assert chapter["title"] == "The Sea"
    assert chapter["book_id"] == "book_1"
    chunks = await collections.pages.find({"job_id": job["job_id"]}).sort("page_index").to_list()
    assert [c["page_index"] for c in chunks] == list(range(12))
    assert "Page 3 of 12" in chunks[2]["content"]
    assert chunks[2]["metadata"] == {"source_file": "sea.pdf", "page_number": 3, "total_pages": 12}


async def test_title_falls_back_to_the_file_name(collections, submit, run_worker):
    job = await submit(text_pdf(1), filename="Chapter One.pdf")

    await run_worker()

    stored = await _job(collections, job["job_id"])
    chapter = await collections.chapters.find_one({"chapter_id": stored["result"]["chapter_id"]})
    assert chapter["title"] == "Chapter One"


@pytest.mark.parametrize(
    ("make", "code", "reason"),
    [
        (truncated_pdf, "PDF_CORRUPT", "PDF is corrupt or truncated"),
        (garbage_after_header, "PDF_CORRUPT", "PDF is corrupt or truncated"),
        (encrypted_pdf, "PDF_ENCRYPTED", "PDF is encrypted"),
        (zero_page_pdf, "PDF_EMPTY", "PDF has no pages"),
        (
            lambda: sized_page_pdf(200_000, 1),
            "PAGE_TOO_LARGE",
            "PDF page 1 cannot be rendered: 200000 x 1 pt fits no image within PAGE_MAX_PIXELS "
            "(12000000) and webp's 16383-pixel side",
        ),
    ],
    ids=["truncated", "garbage", "encrypted", "empty", "page-too-large"],
)
async def test_bad_pdf_fails_clearly_and_the_worker_goes_on(
    collections, client, auth_headers, submit, run_worker, make, code, reason
):
    bad = await submit(make())
    good = await submit(text_pdf(3))

    await run_worker()

    failed = await _poll(client, auth_headers, bad["job_id"])
    assert failed["status"] == "failed"
    assert failed["error"] == reason
    assert failed["message"] == f"PDF processing failed: {reason}"
    assert failed["failed_at"].endswith("Z")
    assert (await _job(collections, bad["job_id"]))["error_code"] == code
    assert (await _poll(client, auth_headers, good["job_id"]))["status"] == "completed"


def _pdf_with_unreadable_page() -> bytes:
    doc = pymupdf.open(stream=text_pdf(3), filetype="pdf")
    doc.xref_set_key(doc[1].xref, "Contents", "[ 99999 0 R ]")  # page 2 points at nothing
    data = doc.tobytes()
    doc.close()
    return data


async def test_unreadable_page_is_recorded_and_the_job_goes_on(
    collections, client, auth_headers, submit, run_worker
):
    job = await submit(_pdf_with_unreadable_page())

    await run_worker()

    body = await _poll(client, auth_headers, job["job_id"])
    stored = await _job(collections, job["job_id"])
    assert body["status"] == "completed"
    assert body["result"]["total_pages"] == 3
    assert [e["page_number"] for e in stored["page_errors"]] == [2]
    assert "not a stream" in stored["page_errors"][0]["error"]


async def test_file_deleted_before_processing_fails_clearly(
    collections, client, auth_headers, submit, run_worker, app
):
    job = await submit(text_pdf(2))
    job_file = (await _job(collections, job["job_id"]))["file_id"]
    await app.state.services.store.files.delete(job_file)
    await run_worker()

    body = await _poll(client, auth_headers, job["job_id"])
    assert job_file
    assert body["status"] == "failed"
    assert body["error"] == "PDF file not found"


async def test_memory_blow_up_fails_with_out_of_memory(
    collections, client, auth_headers, submit, run_worker
):
    bad = await submit(memory_bomb_pdf())
    # Text only: under a 32 MB cap a render process has no room for a 150 DPI page image.
    good_after = await submit(text_pdf(2), content_mode="pdf_file")

    await run_worker(job_memory_limit_mb=32)

    body = await _poll(client, auth_headers, bad["job_id"])
    assert body["status"] == "failed"
    assert body["error"] == "Out of memory"
    assert body["message"] == "PDF processing failed: Out of memory"
    assert (await _job(collections, bad["job_id"]))["error_code"] == "OUT_OF_MEMORY"
    assert (await _poll(client, auth_headers, good_after["job_id"]))["status"] == "completed"


async def test_time_limit_fails_with_a_clear_timeout(
    collections, client, auth_headers, submit, run_worker
):
    job = await submit(memory_bomb_pdf())  # about a second of MuPDF work, with memory to spare

    await run_worker(job_time_limit_s=0.3, job_memory_limit_mb=2048)

    body = await _poll(client, auth_headers, job["job_id"])
    assert body["status"] == "failed"
    assert body["error"] == "PDF processing timed out after 0.3 s"
    assert 0 <= body["progress"] < 100
    assert (await _job(collections, job["job_id"]))["error_code"] == "TIMEOUT"


async def test_progress_is_written_a_few_times_not_per_page(collections, submit, run_worker):
    job = await submit(text_pdf(300, words=5), content_mode="pdf_file")

    # However long rendering takes here, the throttle allows no write but the forced ones.
    await run_worker(progress_interval_s=3600)

    stored = await _job(collections, job["job_id"])
    assert stored["status"] == "completed"
    assert stored["pages_processed"] == 300
    # claim, download (10), opened (30), first batch, the last flush, 70, 100
    assert stored["version"] < 10
