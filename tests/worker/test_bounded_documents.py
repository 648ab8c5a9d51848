"""Whatever a PDF makes MuPDF say, a job's document and every view of it stay small: a page's
warnings are kept as the first few and a count, and so are the pages with problems."""

from __future__ import annotations

from service.domain.lifecycle import MAX_LISTED_PAGE_ERRORS, PAGE_ERROR_CHARS
from tests.support.pdfs import warning_pdf
from worker.run.pages import CHUNK_WARNINGS

PAGES = 1_600


async def _bson_size(collection, query) -> int:
    cursor = await collection.aggregate(
        [{"$match": query}, {"$project": {"size": {"$bsonSize": "$$ROOT"}}}]
    )
    [row] = await cursor.to_list()
    return int(row["size"])


async def test_a_pdf_warning_60_times_on_each_of_1600_pages_keeps_every_document_small(
    client, auth_headers, submit, run_worker, collections
):
    # Text only: the warnings come from reading each page's content, and images would only
    # make the test slower. Uncapped, these warnings made the job 16 MB at page 1,300.
    job = await submit(warning_pdf(PAGES), content_mode="pdf_file")

    await run_worker()

    stored = await collections.jobs.find_one({"job_id": job["job_id"]})
    view = await client.get(f"/api/v1/ingestion/job/{job['job_id']}", headers=auth_headers("alice"))
    job_bytes = await _bson_size(collections.jobs, {"job_id": job["job_id"]})
    largest_page = max(
        [
            await _bson_size(collections.pages, {"_id": doc["_id"]})
            async for doc in collections.pages.find({"job_id": job["job_id"]}, {"_id": 1}).limit(3)
        ],
        default=0,
    )
    assert stored["status"] == "completed", stored.get("error")
    assert stored["page_errors_total"] == PAGES
    assert len(stored["page_errors"]) == MAX_LISTED_PAGE_ERRORS
    assert all(len(error["error"]) <= PAGE_ERROR_CHARS for error in stored["page_errors"])
    warned = stored["page_errors"][0]["warnings"]
    assert warned >= 60  # one per missing XObject (and what else MuPDF says)
    assert job_bytes < 32 * 1024  # the page numbers of 1,600 pages, and ten short errors
    assert largest_page < 4 * 1024  # ten warnings and a count, not sixty
    assert view.status_code == 200
    assert len(view.content) < 5_000
    body = view.json()
    assert len(body["progress"]["errors"]) == MAX_LISTED_PAGE_ERRORS
    assert body["stats"]["pages_with_errors"] == PAGES
    assert body["errors"][-1]["error"] == (
        f"{PAGES - MAX_LISTED_PAGE_ERRORS} more pages with errors or warnings are not listed "
        f"({PAGES} in all)"
    )
    page = await collections.pages.find_one({"job_id": job["job_id"], "page_index": 0})
    assert len(page["warnings"]) == CHUNK_WARNINGS + 1
    assert page["warnings"][-1] == f"... and {warned - CHUNK_WARNINGS} more warnings"
