"""POST /api/v1/files: PDFs stream into GridFS; every rejected upload leaves nothing behind."""

from __future__ import annotations

import hashlib

from tests.support.pdfs import text_pdf


async def _stored_counts(gridfs):
    files, chunks = gridfs
    return await files.count_documents({}), await chunks.count_documents({})


async def test_upload_pdf_is_201_with_its_description(upload, gridfs):
    data = text_pdf(3)

    response = await upload(data, filename="../../etc/My Book.pdf")

    assert response.status_code == 201
    body = response.json()
    assert body["filename"] == "My Book.pdf"
    assert body["size_bytes"] == len(data)
    assert body["sha256"] == hashlib.sha256(data).hexdigest()
    assert body["content_type"] == "application/pdf"
    assert body["created_at"].endswith("Z")
    stored = await gridfs[0].find_one({"_id": body["file_id"]})
    assert stored["length"] == len(data)
    assert stored["metadata"]["user_id"] == "alice"


async def test_upload_large_pdf_spans_many_gridfs_chunks(upload, gridfs):
    data = text_pdf(400, words=120)

    response = await upload(data)

    assert response.status_code == 201
    assert await gridfs[1].count_documents({"files_id": response.json()["file_id"]}) > 1


async def test_upload_not_a_pdf_is_415_and_nothing_is_kept(upload, gridfs):
    response = await upload(b"GIF89a" + b"\x00" * 5000, filename="cat.pdf")

    assert response.status_code == 415
    assert response.json() == {"detail": "File is not a PDF"}
    assert await _stored_counts(gridfs) == (0, 0)


async def test_upload_short_non_pdf_is_415(upload, gridfs):
    response = await upload(b"hello", filename="a.pdf")

    assert response.status_code == 415
    assert await _stored_counts(gridfs) == (0, 0)


async def test_upload_empty_file_is_400_and_nothing_is_kept(upload, gridfs):
    response = await upload(b"")

    assert response.status_code == 400
    assert response.json() == {"detail": "File is empty"}
    assert await _stored_counts(gridfs) == (0, 0)


async def test_upload_over_the_limit_is_413_and_nothing_is_kept(
    settings, other_app, cert_server, app
):
    small = settings.model_copy(update={"max_upload_mb": 1})
    data = b"%PDF-1.7\n" + b"0" * (1024 * 1024 + 10)
    headers = {"Authorization": f"Bearer {cert_server.token('alice')}"}

    async with other_app(small) as client:
        response = await client.post(
            "/api/v1/files", files={"file": ("big.pdf", data, "application/pdf")}, headers=headers
        )

    db = app.state.services.store.collections.db
    assert response.status_code == 413
    assert response.json() == {"detail": "File exceeds the 1 MB upload limit"}
    assert await db["pdf_files.files"].count_documents({}) == 0
    assert await db["pdf_files.chunks"].count_documents({}) == 0


async def test_upload_without_file_field_is_400(client, auth_headers):
    response = await client.post(
        "/api/v1/files",
        data={"book_id": "b"},
        files={"x": ("", b"")},
        headers=auth_headers("alice"),
    )

    assert response.status_code == 400


async def test_upload_json_body_is_400(client, auth_headers):
    response = await client.post("/api/v1/files", json={"file": "x"}, headers=auth_headers("alice"))

    assert response.status_code == 400
    assert response.json() == {"detail": "Expected multipart/form-data with a 'file' field"}


async def test_upload_requires_a_token(client, gridfs):
    response = await client.post(
        "/api/v1/files", files={"file": ("a.pdf", text_pdf(1), "application/pdf")}
    )

    assert response.status_code == 401
    assert await _stored_counts(gridfs) == (0, 0)
