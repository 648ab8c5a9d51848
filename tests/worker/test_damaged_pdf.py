"""A PDF cut short still becomes a chapter of the pages that survive, and says what was wrong."""

from __future__ import annotations

from tests.support.pdfs import cut_pdf


async def test_cut_off_pdf_completes_with_every_page_warning_recorded(
    collections, submit, run_worker
):
    job = await submit(cut_pdf(0.5))

    await run_worker()

    stored = await collections.jobs.find_one({"job_id": job["job_id"]})
    page_docs = collections.pages
    assert stored["status"] == "completed"
    assert await page_docs.count_documents({"job_id": job["job_id"]}) == 5  # none lost
    errors = {error["page_number"]: error["error"] for error in stored["page_errors"]}
    # The damaged page's warnings never say "error": the old rule recorded nothing for it.
    assert any("premature end of data" in text and "error" not in text for text in errors.values())
