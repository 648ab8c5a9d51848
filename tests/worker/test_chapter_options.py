"""What the create request asks of a chapter (seed 002 as JSON and multipart, seed 003), and
what a chapter and the other seeds' views say of the PDF it came from (repaired, one page)."""

from __future__ import annotations

from typing import Any

from tests.support.pdfs import text_pdf, truncated_tail_pdf

JOBS = "/api/v1/books/jobs"


async def _chapter_of(collections, client, auth_headers, job_id: str) -> dict[str, Any]:
    body = (await client.get(f"{JOBS}/{job_id}", headers=auth_headers("alice"))).json()
    assert body["status"] == "completed", body
    chapter_id = body["result"]["chapter_id"]
    book_id = (await collections.jobs.find_one({"job_id": job_id}))["book_id"]
    response = await client.get(
        f"/api/v1/books/{book_id}/chapters/{chapter_id}", headers=auth_headers("alice")
    )
    assert response.status_code == 200
    return response.json()


async def _jobs(collections) -> int:
    return await collections.jobs.count_documents({})


OPTIONS = {
    "title": "The Harbour",
    "slug": "the-harbour",
    "order_index": 3,
    "is_published": True,
    "is_preview_free": True,
    "content_mode": "pdf_file",
}


def _shaped_as_asked(chapter: dict[str, Any]) -> dict[str, Any]:
    return {name: chapter[name] for name in OPTIONS}


async def test_json_create_options_shape_the_chapter(
    collections, client, auth_headers, submit, run_worker
):
    job = await submit(text_pdf(2, title="Metadata title"), **OPTIONS)

    await run_worker()

    chapter = await _chapter_of(collections, client, auth_headers, job["job_id"])
    assert _shaped_as_asked(chapter) == OPTIONS
    assert chapter["parent_id"] is None


async def test_multipart_create_options_shape_the_chapter(
    collections, client, auth_headers, run_worker
):
    form = {"book_id": "book_1", **{name: str(value).lower() for name, value in OPTIONS.items()}}
    form["title"] = OPTIONS["title"]  # str().lower() is for the booleans
    created = await client.post(
        JOBS,
        data=form,
        files={"file": ("harbour.pdf", text_pdf(2), "application/pdf")},
        headers=auth_headers("alice"),
    )
    assert created.status_code == 202, created.text

    await run_worker()

    chapter = await _chapter_of(collections, client, auth_headers, created.json()["job_id"])
    assert _shaped_as_asked(chapter) == OPTIONS


async def test_seed_003_create_options_shape_the_chapter(
    collections, client, auth_headers, upload, run_worker
):
    file_id = (await upload(text_pdf(2))).json()["file_id"]
    payload = {"book_id": "book_1", "file_id": file_id, **OPTIONS}
    title = payload.pop("title")
    created = await client.post(
        "/api/v1/jobs", json={"title": title, "payload": payload}, headers=auth_headers("alice")
    )
    assert created.status_code == 201, created.text

    await run_worker()

    chapter = await _chapter_of(collections, client, auth_headers, created.json()["id"])
    assert _shaped_as_asked(chapter) == OPTIONS


async def test_a_slug_taken_in_the_book_is_409_and_creates_no_job(
    collections, client, auth_headers, submit, run_worker, upload
):
    await submit(text_pdf(1), slug="intro", content_mode="pdf_file")
    await run_worker()
    file_id = (await upload(text_pdf(1))).json()["file_id"]
    before = await _jobs(collections)

    taken = await client.post(
        JOBS,
        json={"book_id": "book_1", "file_id": file_id, "slug": "intro"},
        headers=auth_headers("alice"),
    )
    other_book = await client.post(
        JOBS,
        json={"book_id": "book_2", "file_id": file_id, "slug": "intro"},
        headers=auth_headers("alice"),
    )

    assert taken.status_code == 409
    assert taken.json() == {"detail": "Slug 'intro' is already used in this book"}
    assert other_book.status_code == 202  # slugs are unique per book, not everywhere
    assert await _jobs(collections) == before + 1


async def test_a_slug_asked_for_by_a_pending_job_is_409(client, auth_headers, submit, upload):
    await submit(text_pdf(1), slug="intro")
    file_id = (await upload(text_pdf(1))).json()["file_id"]

    response = await client.post(
        JOBS,
        json={"book_id": "book_1", "file_id": file_id, "slug": "intro"},
        headers=auth_headers("alice"),
    )

    assert response.status_code == 409


async def test_a_parent_in_another_book_is_422_and_one_in_the_book_is_kept(
    collections, client, auth_headers, submit, run_worker, upload
):
    parent_job = await submit(text_pdf(1), content_mode="pdf_file")  # in book_1
    await run_worker()
    parent = await _chapter_of(collections, client, auth_headers, parent_job["job_id"])
    file_id = (await upload(text_pdf(1))).json()["file_id"]
    before = await _jobs(collections)

    elsewhere = await client.post(
        JOBS,
        json={"book_id": "book_2", "file_id": file_id, "parent_id": parent["chapter_id"]},
        headers=auth_headers("alice"),
    )
    beside = await client.post(
        JOBS,
        json={"book_id": "book_1", "file_id": file_id, "parent_id": parent["chapter_id"]},
        headers=auth_headers("alice"),
    )
    await run_worker()

    assert elsewhere.status_code == 422
    assert elsewhere.json()["detail"] == "parent_id names no chapter of this book"
    assert elsewhere.json()["errors"] == [
        {"field": "parent_id", "message": "no such chapter in this book"}
    ]
    assert beside.status_code == 202
    assert await _jobs(collections) == before + 1
    child = await _chapter_of(collections, client, auth_headers, beside.json()["job_id"])
    assert child["parent_id"] == parent["chapter_id"]


async def test_slug_is_made_from_the_title_and_suffixed_when_taken(
    collections, client, auth_headers, submit, run_worker
):
    first = await submit(text_pdf(1), title="Chapter One: The Sea!", content_mode="pdf_file")
    second = await submit(text_pdf(1), title="Chapter One: The Sea!", content_mode="pdf_file")

    await run_worker()

    slugs = [
        (await _chapter_of(collections, client, auth_headers, job["job_id"]))["slug"]
        for job in (first, second)
    ]
    assert sorted(slugs) == ["chapter-one-the-sea", "chapter-one-the-sea-2"]
    assert await collections.chapters.count_documents({}) == 2


async def test_a_repaired_pdf_says_so_on_the_chapter_and_the_seed_views(
    collections, client, auth_headers, submit, run_worker
):
    job = await submit(truncated_tail_pdf(3))

    await run_worker()

    chapter = await _chapter_of(collections, client, auth_headers, job["job_id"])
    seed_000 = await client.get(f"/api/v1/jobs/{job['job_id']}", headers=auth_headers("alice"))
    seed_001 = await client.get(
        f"/api/v1/ingestion/job/{job['job_id']}", headers=auth_headers("alice")
    )
    assert chapter["repaired"] is True
    assert chapter["total_pages"] == 3
    assert seed_000.json()["repaired"] is True
    assert seed_001.json()["repaired"] is True


async def test_a_one_page_pdf_says_with_1_page_and_is_not_repaired(
    collections, client, auth_headers, submit, run_worker
):
    job = await submit(text_pdf(1))

    await run_worker()

    body = (await client.get(f"{JOBS}/{job['job_id']}", headers=auth_headers("alice"))).json()
    seed_000 = await client.get(f"/api/v1/jobs/{job['job_id']}", headers=auth_headers("alice"))
    seed_001 = await client.get(
        f"/api/v1/ingestion/job/{job['job_id']}", headers=auth_headers("alice")
    )
    assert body["message"] == "Chapter created successfully with 1 page"
    assert seed_000.json()["repaired"] is False
    assert seed_001.json()["repaired"] is False
    chapter = await _chapter_of(collections, client, auth_headers, job["job_id"])
    assert chapter["repaired"] is False
