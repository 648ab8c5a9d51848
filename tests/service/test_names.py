"""Names through the API: file names are cleaned, a book_id with invisible characters is a 422."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest

from tests.support.pdfs import text_pdf

BOUNDARY = "pcj-names"


def form(filename: str, book_id: str | None = None) -> bytes:
    """A multipart body built by hand: httpx would percent-encode some control characters."""
    body = b""
    if book_id is not None:
        body += (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="book_id"\r\n\r\n'.encode()
            + book_id.encode()
            + b"\r\n"
        )
    body += (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="{filename}"\r\nContent-Type: application/pdf\r\n\r\n'
    ).encode() + text_pdf(1)
    return body + f"\r\n--{BOUNDARY}--\r\n".encode()


@pytest.fixture
def send(client, auth_headers):
    async def post(path: str, body: bytes, content_type: str):
        headers = {**auth_headers("alice"), "Content-Type": content_type}
        return await client.post(path, content=body, headers=headers)

    return post


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("a\x1b[31mred.pdf", "ared.pdf"),
        ("t\x1b]0;owned\x07x.pdf", "tx.pdf"),
        ("evil\u202efdp.exe", "evilfdp.exe"),
        ("zero\u200bwidth.pdf", "zerowidth.pdf"),
    ],
)
async def test_uploaded_file_name_loses_escape_sequences(send, db, filename, expected):
    response = await send(
        "/api/v1/files", form(filename), f"multipart/form-data; boundary={BOUNDARY}"
    )

    assert response.status_code == 201
    assert response.json()["filename"] == expected
    stored = await db["pdf_files.files"].find_one({"_id": response.json()["file_id"]})
    assert stored["filename"] == expected


BAD_BOOK_IDS = [
    pytest.param("book\x00", "0000", id="nul"),
    pytest.param("book\r\nX-Injected: 1", "000D", id="crlf"),
    pytest.param("book\n", "000A", id="lf"),
    pytest.param("\u202ekoob", "202E", id="rlo"),
    pytest.param("book\u2066", "2066", id="isolate"),
    pytest.param("bo\u200bok", "200B", id="zero-width"),
]


@pytest.mark.parametrize(("book_id", "code"), BAD_BOOK_IDS)
async def test_seed_002_book_id_with_invisible_characters_is_422(send, db, file_id, book_id, code):
    body = json.dumps({"book_id": book_id, "file_id": file_id}).encode()

    response = await send("/api/v1/books/jobs", body, "application/json")

    assert response.status_code == 422
    assert response.json() == {
        "detail": "Invalid request body",
        "errors": [
            {"field": "book_id", "message": f"printable characters only: U+{code} is not allowed"}
        ],
    }
    assert await db["pdf_chapter_jobs"].count_documents({}) == 0


@pytest.mark.parametrize(("book_id", "code"), BAD_BOOK_IDS)
async def test_seed_003_book_id_with_invisible_characters_is_422(send, db, file_id, book_id, code):
    body = json.dumps({"title": "t", "payload": {"book_id": book_id, "file_id": file_id}})

    response = await send("/api/v1/jobs", body.encode(), "application/json")

    assert response.status_code == 422
    assert response.json()["errors"] == [
        {
            "field": "payload.book_id",
            "message": f"printable characters only: U+{code} is not allowed",
        }
    ]
    assert await db["pdf_chapter_jobs"].count_documents({}) == 0


async def test_book_id_over_128_characters_is_422_naming_it(send, db, file_id):
    body = json.dumps({"book_id": "b" * 129, "file_id": file_id}).encode()

    response = await send("/api/v1/books/jobs", body, "application/json")

    assert response.status_code == 422
    assert [error["field"] for error in response.json()["errors"]] == ["book_id"]
    assert await db["pdf_chapter_jobs"].count_documents({}) == 0


async def test_printable_unicode_book_id_is_accepted(send, file_id):
    body = json.dumps({"book_id": "书 名: Ünïcode (2)", "file_id": file_id}).encode()

    response = await send("/api/v1/books/jobs", body, "application/json")

    assert response.status_code == 202


async def test_multipart_book_id_with_a_line_break_is_422_and_keeps_no_upload(send, db):
    body = form("a.pdf", book_id="book\nX")

    response = await send("/api/v1/books/jobs", body, f"multipart/form-data; boundary={BOUNDARY}")

    assert response.status_code == 422
    assert [error["field"] for error in response.json()["errors"]] == ["book_id"]
    assert await db["pdf_files.files"].count_documents({}) == 0
    assert await db["pdf_files.chunks"].count_documents({}) == 0
    assert await db["pdf_chapter_jobs"].count_documents({}) == 0


@pytest.mark.parametrize("book_id", ["my book/2", "..", "."])
async def test_book_id_that_cannot_be_a_url_path_segment_is_422_and_the_file_is_kept(
    send, db, file_id, book_id
):
    body = json.dumps({"book_id": book_id, "file_id": file_id}).encode()

    response = await send("/api/v1/books/jobs", body, "application/json")

    assert response.status_code == 422
    [problem] = response.json()["errors"]
    assert problem["field"] == "book_id"
    assert problem["message"].endswith("is not allowed: the id is part of the chapter's URL")
    assert await db["pdf_chapter_jobs"].count_documents({}) == 0
    assert await db["pdf_files.files"].count_documents({"_id": file_id}) == 1  # to retry with


async def test_multipart_book_id_with_a_slash_is_422_and_keeps_no_upload(send, db):
    body = form("a.pdf", book_id="shelf/book")

    response = await send("/api/v1/books/jobs", body, f"multipart/form-data; boundary={BOUNDARY}")

    assert response.status_code == 422
    assert [error["field"] for error in response.json()["errors"]] == ["book_id"]
    assert await db["pdf_files.files"].count_documents({}) == 0
    assert await db["pdf_chapter_jobs"].count_documents({}) == 0


async def test_a_chapter_of_a_book_id_with_url_characters_is_read_back(
    client, auth_headers, upload, run_worker
):
    book_id = "my book? #1 %2F ä"  # each character is escaped in the chapter's URL
    file_id = (await upload(text_pdf(2))).json()["file_id"]
    created = await client.post(
        "/api/v1/books/jobs",
        json={"book_id": book_id, "file_id": file_id, "content_mode": "pdf_file"},
        headers=auth_headers("alice"),
    )
    assert created.status_code == 202, created.text
    await run_worker()
    job = (await client.get(f"/api/v1/books/jobs/{created.json()['job_id']}",
                            headers=auth_headers("alice"))).json()  # fmt: skip

    chapter = await client.get(
        f"/api/v1/books/{quote(book_id, safe='')}/chapters/{job['result']['chapter_id']}",
        headers=auth_headers("alice"),
    )

    assert chapter.status_code == 200, chapter.text
    assert chapter.json()["book_id"] == book_id
    assert chapter.json()["total_pages"] == 2


def form_with(disposition: bytes) -> bytes:
    """A multipart body whose one file part carries ``disposition`` as its exact header."""
    return (
        f"--{BOUNDARY}\r\n".encode()
        + b"Content-Disposition: "
        + disposition
        + b"\r\nContent-Type: application/pdf\r\n\r\n"
        + text_pdf(1)
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )


@pytest.mark.parametrize(
    ("disposition", "expected"),
    [
        # Chromium and Firefox percent-encode '"' (and CR, LF) in a quoted name (WHATWG HTML).
        pytest.param(
            b'form-data; name="file"; filename="my %22best%22 book.pdf"',
            'my "best" book.pdf',
            id="chromium-percent",
        ),
        # RFC 9110 quoted-pair, as curl and RFC-minded clients escape a quote.
        pytest.param(
            b'form-data; name="file"; filename="my \\"best\\" book.pdf"',
            'my "best" book.pdf',
            id="quoted-pair",
        ),
        # RFC 8187 ext-value (RFC 6266): it names a file part, and wins over filename.
        pytest.param(
            b"form-data; name=\"file\"; filename*=UTF-8''na%C3%AFve%20book.pdf",
            "naïve book.pdf",
            id="ext-value",
        ),
        pytest.param(
            b'form-data; name="file"; filename="fallback.pdf"; filename*=UTF-8\'\'%E6%9B%B8.pdf',
            "書.pdf",
            id="ext-value-wins",
        ),
        pytest.param(
            'form-data; name="file"; filename="résumé.pdf"'.encode(), "résumé.pdf", id="utf-8"
        ),
        pytest.param(
            b'form-data; name="file"; filename="100%41 sure.pdf"',
            "100%41 sure.pdf",
            id="other-percent-kept",
        ),
        pytest.param(
            b'form-data; name="file"; filename="line%0Abreak.pdf"',
            "linebreak.pdf",
            id="chromium-lf",
        ),
    ],
)
async def test_uploaded_file_name_is_read_as_rfc_7578_and_6266_and_browsers_send_it(
    send, db, disposition, expected
):
    response = await send(
        "/api/v1/files", form_with(disposition), f"multipart/form-data; boundary={BOUNDARY}"
    )

    assert response.status_code == 201, response.text
    assert response.json()["filename"] == expected
    stored = await db["pdf_files.files"].find_one({"_id": response.json()["file_id"]})
    assert stored["filename"] == expected


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(lambda file_id: {"book_id": " ", "file_id": file_id}, id="seed-002"),
        pytest.param(
            lambda file_id: {"title": "t", "payload": {"book_id": "   ", "file_id": file_id}},
            id="seed-003",
        ),
    ],
)
async def test_blank_book_id_is_422(send, db, file_id, body):
    path = "/api/v1/jobs" if "payload" in body(file_id) else "/api/v1/books/jobs"

    response = await send(path, json.dumps(body(file_id)).encode(), "application/json")

    assert response.status_code == 422
    [problem] = response.json()["errors"]
    assert problem["field"].endswith("book_id")
    assert problem["message"].startswith("must not be blank")
    assert await db["pdf_chapter_jobs"].count_documents({}) == 0


async def test_titles_lose_controls_and_bidi_overrides_asked_for_or_from_the_pdf(
    client, auth_headers, upload, run_worker, db
):
    alice = auth_headers("alice")
    asked = await client.post(
        "/api/v1/jobs",
        json={
            "title": "Chapter\u202e1\x00\nTwo",
            "payload": {
                "book_id": "b",
                "file_id": (await upload(text_pdf(1))).json()["file_id"],
                "content_mode": "pdf_file",
            },
        },
        headers=alice,
    )
    from_pdf = await client.post(
        "/api/v1/books/jobs",
        json={
            "book_id": "b",
            "file_id": (await upload(text_pdf(1, title="Evil\u202etxt.exe\x00\r\nX"))).json()[
                "file_id"
            ],
            "content_mode": "pdf_file",
        },
        headers=alice,
    )
    assert asked.status_code == 201, asked.text
    assert from_pdf.status_code == 202, from_pdf.text

    await run_worker()

    assert asked.json()["title"] == "Chapter1 Two"
    titles = {doc["title"] async for doc in db["book_chapters"].find({}, {"title": 1})}
    assert titles == {"Chapter1 Two", "Eviltxt.exe X"}
