"""Reading the chapter a job made, owner-only, page by page."""

from __future__ import annotations

import pytest

from tests.support.pdfs import text_pdf


@pytest.fixture
async def chapter(submit, run_worker, client, auth_headers):
    job = await submit(text_pdf(7, title="Harbour"), filename="harbour.pdf")
    await run_worker()
    body = (
        await client.get(f"/api/v1/books/jobs/{job['job_id']}", headers=auth_headers("alice"))
    ).json()
    return body["result"]["chapter_id"]


async def test_get_chapter_of_a_completed_job(client, auth_headers, chapter):
    response = await client.get(
        f"/api/v1/books/book_1/chapters/{chapter}", headers=auth_headers("alice")
    )

    assert response.status_code == 200
    body = response.json()
    assert body["title"] == "Harbour"
    assert body["total_pages"] == 7
    assert body["source_filename"] == "harbour.pdf"


async def test_chapter_pages_are_paginated_in_order(client, auth_headers, chapter):
    url = f"/api/v1/books/book_1/chapters/{chapter}/pages"

    first = await client.get(url, params={"limit": 3}, headers=auth_headers("alice"))
    last = await client.get(url, params={"limit": 3, "offset": 6}, headers=auth_headers("alice"))
    past = await client.get(url, params={"offset": 50}, headers=auth_headers("alice"))

    assert [p["page_number"] for p in first.json()["items"]] == [1, 2, 3]
    assert "Page 1 of 7" in first.json()["items"][0]["content"]
    assert first.json()["total"] == 7
    assert [p["page_number"] for p in last.json()["items"]] == [7]
    assert past.json()["items"] == []


async def test_chapter_of_another_user_is_404(client, auth_headers, chapter):
    response = await client.get(
        f"/api/v1/books/book_1/chapters/{chapter}", headers=auth_headers("bob")
    )

    assert response.status_code == 404


async def test_chapter_under_another_book_is_404(client, auth_headers, chapter):
    response = await client.get(
        f"/api/v1/books/other/chapters/{chapter}/pages", headers=auth_headers("alice")
    )

    assert response.status_code == 404
