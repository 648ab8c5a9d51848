"""Seed 001: GET /api/v1/ingestion/job/{job_id}, ingestion-style status over the same jobs."""

from __future__ import annotations

import re
import uuid

import pytest

from service.domain.job import JobStatus
from tests.support.pdfs import encrypted_pdf, text_pdf

ISO_MS_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def _url(job_id):
    return f"/api/v1/ingestion/job/{job_id}"


async def test_pending_job(client, job_factory, auth_headers):
    job = await job_factory()

    response = await client.get(_url(job.job_id), headers=auth_headers("alice"))

    assert response.status_code == 200
    body = response.json()
    assert body == {
        "job_id": job.job_id,
        "status": "pending",
        "progress": {"pages_total": 0, "pages_processed": 0, "chunks_created": 0, "errors": []},
        "created_at": body["created_at"],
        "started_at": None,
        "completed_at": None,
        "errors": [],
        "stats": {"attempts": 0, "ocr_pages": 0},
        "repaired": False,
    }


async def test_processing_job_is_running(client, job_factory, auth_headers):
    job = await job_factory(
        status=JobStatus.processing, progress=45, pages_total=10, pages_processed=4
    )

    body = (await client.get(_url(job.job_id), headers=auth_headers("alice"))).json()

    assert body["status"] == "running"
    assert body["progress"]["pages_total"] == 10
    assert body["progress"]["pages_processed"] == 4


async def test_completed_job_counts_pages_chunks_and_times_each_stage(
    collections, client, auth_headers, submit, run_worker, index_chapters
):
    job = await submit(text_pdf(4))
    await run_worker()
    before_indexing = (await client.get(_url(job["job_id"]), headers=auth_headers("alice"))).json()
    await index_chapters()

    body = (await client.get(_url(job["job_id"]), headers=auth_headers("alice"))).json()

    assert body["status"] == "completed"
    chunks = await collections.chunks.count_documents({"job_id": job["job_id"]})
    assert chunks >= 4  # every page's text is in some passage
    assert before_indexing["progress"]["chunks_created"] == 0  # the chapter was ready before
    assert body["progress"] == {
        "pages_total": 4, "pages_processed": 4, "chunks_created": chunks, "errors": [],
    }  # fmt: skip
    assert body["stats"]["index_vectors_seconds"] >= 0
    assert ISO_MS_Z.match(body["started_at"])
    assert ISO_MS_Z.match(body["completed_at"])
    assert body["errors"] == []
    stats = body["stats"]
    assert stats["attempts"] == 1
    for stage in ("download_pdf", "extract_pages", "create_chapter"):
        assert stats[f"{stage}_seconds"] >= 0
    assert stats["total_seconds"] >= stats["extract_pages_seconds"]


async def test_failed_job_lists_its_error_with_the_stage(client, auth_headers, submit, run_worker):
    job = await submit(encrypted_pdf())
    await run_worker()

    body = (await client.get(_url(job["job_id"]), headers=auth_headers("alice"))).json()

    assert body["status"] == "failed"
    assert len(body["errors"]) == 1
    error = body["errors"][0]
    assert error["error"] == "PDF is encrypted"
    assert error["stage"] == "extract_pages"
    assert ISO_MS_Z.match(error["timestamp"])
    assert body["completed_at"] == error["timestamp"]


async def test_unreadable_pages_are_listed_in_both_error_lists(
    collections, client, job_factory, auth_headers
):
    job = await job_factory(status=JobStatus.processing, progress=50)
    await collections.jobs.update_one(
        {"job_id": job.job_id},
        {"$set": {"page_errors": [{"page_number": 3, "error": "bad font"}]}},
    )

    body = (await client.get(_url(job.job_id), headers=auth_headers("alice"))).json()

    assert body["progress"]["errors"] == [{"page_number": 3, "error": "bad font"}]
    assert body["errors"][0]["error"] == "page 3: bad font"
    assert body["errors"][0]["stage"] == "extract_pages"


async def test_cancelled_job_is_cancelled(client, job_factory, auth_headers):
    job = await job_factory()
    await client.post(f"/api/v1/books/jobs/{job.job_id}/cancel", headers=auth_headers("alice"))

    body = (await client.get(_url(job.job_id), headers=auth_headers("alice"))).json()

    assert body["status"] == "cancelled"
    assert ISO_MS_Z.match(body["completed_at"])
    assert body["errors"] == []


@pytest.mark.parametrize("case", ["unknown", "malformed", "other user"])
async def test_missing_or_other_users_job_is_404_job_not_found(
    client, job_factory, auth_headers, case
):
    job = await job_factory(user_id="bob")
    job_id = {"unknown": str(uuid.uuid4()), "malformed": "x" * 300, "other user": job.job_id}[case]

    response = await client.get(_url(job_id), headers=auth_headers("alice"))

    assert response.status_code == 404
    assert response.json() == {"detail": "Job not found"}


async def test_missing_token_is_401(client, job_factory):
    job = await job_factory()

    response = await client.get(_url(job.job_id))

    assert response.status_code == 401
    assert response.json() == {"detail": "Could not validate credentials"}
