"""The multipart reader's every error branch: a clear 4xx JSON, and nothing left in GridFS.

Bodies are built byte by byte here, so a test can cut one anywhere; a well-formed body built
the same way is stored (the control that shows the cut, not the builder, is what fails).
"""

from __future__ import annotations

import pytest

BOUNDARY = "pcj-test-boundary"
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"


def part(name: str, data: bytes, filename: str | None = None) -> bytes:
    disposition = f'form-data; name="{name}"'
    if filename is not None:
        disposition += f'; filename="{filename}"'
        headers = f"Content-Disposition: {disposition}\r\nContent-Type: application/pdf\r\n"
    else:
        headers = f"Content-Disposition: {disposition}\r\n"
    return f"--{BOUNDARY}\r\n{headers}\r\n".encode() + data + b"\r\n"


def closing() -> bytes:
    return f"--{BOUNDARY}--\r\n".encode()


@pytest.fixture
def post_form(client, auth_headers):
    async def send(body: bytes, content_type: str = CONTENT_TYPE, path: str = "/api/v1/files"):
        headers = {**auth_headers("alice"), "Content-Type": content_type}
        return await client.post(path, content=body, headers=headers)

    return send


async def stored_counts(gridfs):
    files, chunks = gridfs
    return await files.count_documents({}), await chunks.count_documents({})


async def test_complete_hand_built_form_is_stored(post_form, gridfs, pdf):
    response = await post_form(part("file", pdf, "a.pdf") + closing())

    assert response.status_code == 201
    assert response.json()["size_bytes"] == len(pdf)
    assert (await stored_counts(gridfs))[0] == 1


async def test_body_cut_mid_file_is_400_and_nothing_is_stored(post_form, gridfs, pdf):
    body = part("file", pdf, "a.pdf") + closing()

    response = await post_form(body[: len(body) // 2])

    assert response.status_code == 400
    assert response.json() == {"detail": "Multipart body ended before its closing boundary"}
    assert await stored_counts(gridfs) == (0, 0)


@pytest.mark.parametrize(
    "cut",
    [
        pytest.param(len(f"--{BOUNDARY}--\r\n"), id="before-closing-boundary"),
        pytest.param(len("--\r\n"), id="before-final-dashes"),
        pytest.param(len("\r\n"), id="before-final-crlf-is-fine"),
    ],
)
async def test_body_cut_just_before_its_end(post_form, gridfs, pdf, cut):
    body = part("file", pdf, "a.pdf") + closing()

    response = await post_form(body[:-cut])

    if cut == len("\r\n"):
        # The closing boundary is whole; the CRLF after it is optional epilogue (RFC 2046).
        assert response.status_code == 201
        return
    assert response.status_code == 400
    assert response.json() == {"detail": "Multipart body ended before its closing boundary"}
    assert await stored_counts(gridfs) == (0, 0)


async def test_two_files_is_400_and_neither_is_stored(post_form, gridfs, pdf):
    body = part("file", pdf, "a.pdf") + part("file", pdf, "b.pdf") + closing()

    response = await post_form(body)

    assert response.status_code == 400
    assert response.json() == {"detail": "Send exactly one file per request"}
    assert await stored_counts(gridfs) == (0, 0)


async def test_wrong_file_field_name_is_400(post_form, gridfs, pdf):
    response = await post_form(part("document", pdf, "a.pdf") + closing())

    assert response.status_code == 400
    assert response.json() == {"detail": "Unexpected file field 'document': send the PDF as 'file'"}
    assert await stored_counts(gridfs) == (0, 0)


async def test_field_too_long_after_the_file_is_400_and_the_file_is_removed(post_form, gridfs, pdf):
    body = part("file", pdf, "a.pdf") + part("note", b"x" * (64 * 1024 + 1)) + closing()

    response = await post_form(body)

    assert response.status_code == 400
    assert response.json() == {"detail": "Form field 'note' is too long"}
    assert await stored_counts(gridfs) == (0, 0)


async def test_too_many_fields_is_400_and_the_file_is_removed(post_form, gridfs, pdf):
    fields = b"".join(part(f"f{n}", b"v") for n in range(33))

    response = await post_form(part("file", pdf, "a.pdf") + fields + closing())

    assert response.status_code == 400
    assert response.json() == {"detail": "Too many form fields"}
    assert await stored_counts(gridfs) == (0, 0)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"this is not multipart at all\r\n", id="no-boundary-line"),
        pytest.param(
            f"--{BOUNDARY}\r\nContent-Disposition form-data\r\n\r\nx\r\n".encode() + closing(),
            id="header-without-colon",
        ),
        pytest.param(
            f"--{BOUNDARY}\r\nX-Other: 1\r\n\r\nx\r\n".encode() + closing(),
            id="part-without-disposition",
        ),
    ],
)
async def test_malformed_body_is_400(post_form, gridfs, body):
    response = await post_form(body)

    assert response.status_code == 400
    assert response.json()["detail"] in {
        "Malformed multipart body",
        "Malformed multipart part: no form-data name",
        "Multipart body ended before its closing boundary",
    }
    assert await stored_counts(gridfs) == (0, 0)


async def test_file_part_cut_mid_headers_after_data_is_400(post_form, gridfs, pdf):
    body = part("file", pdf, "a.pdf") + f"--{BOUNDARY}\r\nContent-Disp".encode()

    response = await post_form(body)

    assert response.status_code == 400
    assert await stored_counts(gridfs) == (0, 0)


async def test_missing_boundary_is_400(post_form, gridfs, pdf):
    response = await post_form(part("file", pdf, "a.pdf") + closing(), "multipart/form-data")

    assert response.status_code == 400
    assert response.json() == {"detail": "Expected multipart/form-data with a boundary"}
    assert await stored_counts(gridfs) == (0, 0)


async def test_form_without_a_file_is_400(post_form, gridfs):
    response = await post_form(part("book_id", b"b1") + closing())

    assert response.status_code == 400
    assert response.json() == {"detail": "Missing 'file' field"}
    assert await stored_counts(gridfs) == (0, 0)


async def test_seed_002_form_cut_off_is_400_and_creates_nothing(post_form, gridfs, pdf, app):
    body = part("book_id", b"book-1") + part("file", pdf, "a.pdf") + closing()

    response = await post_form(body[:-10], path="/api/v1/books/jobs")

    jobs = app.state.services.store.collections.db["pdf_chapter_jobs"]
    assert response.status_code == 400
    assert response.json() == {"detail": "Multipart body ended before its closing boundary"}
    assert await stored_counts(gridfs) == (0, 0)
    assert await jobs.count_documents({}) == 0


async def test_seed_002_form_book_id_after_a_cut_file_is_400(post_form, gridfs, pdf, app):
    # The file part is whole, the book_id field after it is cut: the file must not survive.
    body = part("file", pdf, "a.pdf") + part("book_id", b"book-1") + closing()
    cut = body[: body.rindex(b"book-1") + 3]

    response = await post_form(cut, path="/api/v1/books/jobs")

    jobs = app.state.services.store.collections.db["pdf_chapter_jobs"]
    assert response.status_code == 400
    assert await stored_counts(gridfs) == (0, 0)
    assert await jobs.count_documents({}) == 0
