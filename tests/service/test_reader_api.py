"""What the reader reads, through the real worker: the chapter's outline as objects, each page's
links on its words, a chapter and its pages without the heavy parts (the page list, the text),
when image URLs expire, and the job's book, file name and deleted chapter on every view."""

from __future__ import annotations

from datetime import UTC, datetime

from service.domain.signing import expires_at
from tests.support.pdfs import READER_LINK, reader_pdf, text_pdf

JOBS = "/api/v1/books/jobs"


async def _chapter(client, auth_headers, job, user_id="alice", query=""):
    polled = await client.get(f"{JOBS}/{job['job_id']}", headers=auth_headers(user_id))
    chapter_id = polled.json()["result"]["chapter_id"]
    url = f"/api/v1/books/book_1/chapters/{chapter_id}"
    return url, (await client.get(url + query, headers=auth_headers(user_id))).json()


async def test_chapter_outline_is_a_list_of_level_title_page_objects(
    client, auth_headers, submit, run_worker
):
    job = await submit(reader_pdf(24))
    await run_worker()

    _, chapter = await _chapter(client, auth_headers, job)

    assert chapter["outline"] == [
        {"level": 1, "title": "Contents", "page": 1},
        {"level": 1, "title": "Section 1", "page": 11},
        {"level": 2, "title": "Section 2", "page": 21},
    ]


async def test_words_carry_the_pages_links_in_image_pixels(
    client, auth_headers, submit, run_worker
):
    job = await submit(reader_pdf(24))
    await run_worker()
    url, chapter = await _chapter(client, auth_headers, job)

    first = (await client.get(f"{url}/pages/1/words", headers=auth_headers("alice"))).json()
    second = (await client.get(f"{url}/pages/2/words", headers=auth_headers("alice"))).json()

    links = first["links"]
    assert [(link["page"], link["uri"]) for link in links] == [
        (11, None),
        (21, None),
        (None, READER_LINK),
    ]
    page = chapter["pages"][0]
    for link in links:
        assert 0 <= link["x0"] < link["x1"] <= page["width"]
        assert 0 <= link["y0"] < link["y1"] <= page["height"]
    # The first link covers the words of its line: "Section 1 begins on page 11".
    line = [w for w in first["words"] if w[1] < links[0]["y1"] and w[3] > links[0]["y0"]]
    assert " ".join(w[4] for w in line) == "Section 1 begins on page 11"
    assert second["links"] == []


async def test_chapter_without_its_page_list_and_pages_without_their_text(
    client, auth_headers, submit, run_worker
):
    job = await submit(text_pdf(5))
    await run_worker()
    url, whole = await _chapter(client, auth_headers, job)

    _, bare = await _chapter(client, auth_headers, job, query="?pages=false")
    window = (
        await client.get(f"{url}/pages?offset=1&limit=2&text=false", headers=auth_headers("alice"))
    ).json()
    with_text = (await client.get(f"{url}/pages?limit=1", headers=auth_headers("alice"))).json()

    assert len(whole["pages"]) == 5
    assert bare["pages"] == []
    assert {k: v for k, v in bare.items() if k != "pages"} == {
        k: v for k, v in whole.items() if k not in ("pages",)
    }
    assert [item["page_number"] for item in window["items"]] == [2, 3]
    assert all("content" not in item for item in window["items"])
    assert window["items"][0]["thumbnail_url"] == whole["pages"][1]["thumbnail_url"]
    assert window["total"] == 5
    assert with_text["items"][0]["content"].startswith("Page 1 of 5")


async def test_image_urls_say_when_they_expire(client, auth_headers, submit, run_worker, settings):
    job = await submit(text_pdf(1))
    await run_worker()
    before = datetime.now(UTC).timestamp()

    url, chapter = await _chapter(client, auth_headers, job)
    listed = (await client.get(f"{url}/pages", headers=auth_headers("alice"))).json()

    stamp = datetime.fromisoformat(chapter["urls_expire_at"].replace("Z", "+00:00")).timestamp()
    signed = int(chapter["pages"][0]["background_url"].split("expires=")[1].split("&")[0])
    assert expires_at(before, settings.page_url_ttl_s) <= stamp <= signed
    assert listed["urls_expire_at"] == chapter["urls_expire_at"]


async def test_job_json_names_its_book_and_file_on_every_view(
    client, auth_headers, submit, run_worker
):
    job = await submit(text_pdf(1), filename="Tide tables.pdf")
    await run_worker()

    polled = (await client.get(f"{JOBS}/{job['job_id']}", headers=auth_headers("alice"))).json()
    listed = (await client.get(f"{JOBS}/", headers=auth_headers("alice"))).json()["items"]

    assert (job["book_id"], job["filename"]) == ("book_1", "Tide tables.pdf")
    assert (polled["book_id"], polled["filename"]) == ("book_1", "Tide tables.pdf")
    assert [(item["book_id"], item["filename"]) for item in listed] == [
        ("book_1", "Tide tables.pdf")
    ]
    assert "chapter_deleted_at" not in polled


async def test_deleting_a_chapter_marks_its_job_with_a_new_version(
    client, auth_headers, submit, run_worker
):
    job = await submit(text_pdf(2))
    await run_worker()
    job_url = f"{JOBS}/{job['job_id']}"
    before = await client.get(job_url, headers=auth_headers("alice"))
    url, _ = await _chapter(client, auth_headers, job)

    deleted = await client.delete(url, headers=auth_headers("alice"))
    after = await client.get(
        job_url, headers={**auth_headers("alice"), "If-None-Match": before.headers["etag"]}
    )

    assert deleted.status_code == 204
    assert after.status_code == 200  # not a 304: the job changed
    body = after.json()
    assert body["status"] == "completed"
    assert body["result"] == before.json()["result"]
    assert body["chapter_deleted_at"] >= before.json()["completed_at"]
    gone = await client.get(url, headers=auth_headers("alice"))
    assert gone.status_code == 404
