"""Every page says where its text came from and where each word stands: the pages list, the
chapter, the ingestion view and the words endpoint, through the real worker (OCR included)."""

from __future__ import annotations

import pytest

from service.domain.words import decode_words
from tests.support.pdfs import text_pdf
from tests.support.scans import cer, clean_scan

JOBS = "/api/v1/books/jobs"


async def _chapter_id(client, auth_headers, job, user_id="alice"):
    polled = await client.get(f"{JOBS}/{job['job_id']}", headers=auth_headers(user_id))
    return polled.json()["result"]["chapter_id"]


def _words_url(chapter_id, page_number, book_id="book_1"):
    return f"/api/v1/books/{book_id}/chapters/{chapter_id}/pages/{page_number}/words"


async def test_words_are_boxed_in_the_page_images_pixels_in_reading_order(
    collections, client, auth_headers, submit, run_worker
):
    job = await submit(text_pdf(2, words=60))
    await run_worker()
    chapter_id = await _chapter_id(client, auth_headers, job)
    chapter = (await client.get(f"/api/v1/books/book_1/chapters/{chapter_id}",
                                headers=auth_headers("alice"))).json()  # fmt: skip

    response = await client.get(_words_url(chapter_id, 2), headers=auth_headers("alice"))

    assert response.status_code == 200
    body = response.json()
    page = chapter["pages"][1]
    assert (body["width"], body["height"]) == (page["width"], page["height"])
    words = body["words"]
    assert [word[4] for word in words[:4]] == ["Page", "2", "of", "2"]
    assert [word[4] for word in words[4:]] == [f"word1-{n}" for n in range(60)]
    for x0, y0, x1, y1, _, block, line in words:
        assert 0 <= x0 < x1 <= body["width"]
        assert 0 <= y0 < y1 <= body["height"]
        assert block >= 0
        assert line >= 0
    lines = [(word[5], word[6]) for word in words]
    assert lines == sorted(lines)  # blocks and lines in reading order
    stored = await collections.pages.find_one({"job_id": job["job_id"], "page_index": 1})
    assert len(stored["words"]) < 20 * len(words)  # compact: not a list of documents


async def test_words_are_cached_like_the_images(client, auth_headers, submit, run_worker):
    job = await submit(text_pdf(1))
    await run_worker()
    url = _words_url(await _chapter_id(client, auth_headers, job), 1)
    first = await client.get(url, headers=auth_headers("alice"))

    again = await client.get(
        url, headers={**auth_headers("alice"), "If-None-Match": first.headers["etag"]}
    )

    assert first.headers["etag"].startswith('"')
    assert first.headers["cache-control"] == "private, no-cache"
    assert again.status_code == 304
    assert again.content == b""


@pytest.mark.parametrize("page_number", ["0", "3", "999999999"])
async def test_a_page_the_chapter_does_not_have_is_404(
    client, auth_headers, submit, run_worker, page_number
):
    job = await submit(text_pdf(2))
    await run_worker()
    chapter_id = await _chapter_id(client, auth_headers, job)

    response = await client.get(_words_url(chapter_id, page_number), headers=auth_headers("alice"))

    assert response.status_code == 404
    assert response.json() == {"detail": f"Page {page_number} of chapter {chapter_id} not found"}


async def test_another_users_chapter_is_404_and_a_non_number_page_is_400(
    client, auth_headers, submit, run_worker
):
    job = await submit(text_pdf(1), user_id="bob")
    await run_worker()
    bobs = await _chapter_id(client, auth_headers, job, user_id="bob")

    theirs = await client.get(_words_url(bobs, 1), headers=auth_headers("alice"))
    nonsense = await client.get(_words_url(bobs, "one"), headers=auth_headers("bob"))

    assert theirs.status_code == 404
    assert theirs.json() == {"detail": f"Chapter {bobs} not found"}
    assert nonsense.status_code in (400, 404)
    assert "detail" in nonsense.json()


async def test_a_scanned_page_is_read_by_ocr_and_says_so_everywhere(
    client, auth_headers, submit, run_worker
):
    scan = clean_scan(words=120)
    job = await submit(scan.pdf)
    await run_worker()
    chapter_id = await _chapter_id(client, auth_headers, job)
    headers = auth_headers("alice")

    chapter = await client.get(f"/api/v1/books/book_1/chapters/{chapter_id}", headers=headers)
    pages = await client.get(f"/api/v1/books/book_1/chapters/{chapter_id}/pages", headers=headers)
    ingestion = await client.get(f"/api/v1/ingestion/job/{job['job_id']}", headers=headers)
    words = await client.get(_words_url(chapter_id, 1), headers=headers)

    page = pages.json()["items"][0]
    print(
        f"CER of a clean 200 DPI scan through the pipeline: {cer(page['content'], scan.text):.2%}"
    )
    assert page["text_source"] == "ocr"
    assert page["has_text"] is True
    assert page["ocr_confidence"] > 80
    assert cer(page["content"], scan.text) < 0.02
    assert chapter.json()["pages"][0]["text_source"] == "ocr"
    assert chapter.json()["ocr_pages"] == 1
    assert ingestion.json()["stats"]["ocr_pages"] == 1
    read = [word[4] for word in words.json()["words"]]
    assert cer(" ".join(read), " ".join(scan.text.split())) < 0.02


async def test_a_page_with_a_text_layer_says_its_text_came_from_the_pdf(
    collections, client, auth_headers, submit, run_worker
):
    job = await submit(text_pdf(1))
    await run_worker()

    stored = await collections.pages.find_one({"job_id": job["job_id"]})

    assert stored["text_source"] == "pdf"
    assert stored["ocr_confidence"] is None
    assert [word.text for word in decode_words(stored["words"])][:2] == ["Page", "1"]
