"""DELETE /api/v1/files/{file_id}: owner-only, refused while a job reads the file, and the bytes
are gone (issue 13, item 4)."""

from __future__ import annotations

import pytest

from service.domain.job import JobStatus
from tests.support.pdfs import text_pdf

FILES = "/api/v1/files"


async def _chunks_of(gridfs, file_id):
    return await gridfs[1].count_documents({"files_id": file_id})


async def test_delete_own_file_is_204_and_its_chunks_are_gone(client, auth_headers, upload, gridfs):
    file_id = (await upload(b"%PDF-1.7\n" + b"x" * 600 * 1024)).json()["file_id"]
    kept_id = (await upload(text_pdf(1))).json()["file_id"]
    assert await _chunks_of(gridfs, file_id) == 3  # 255 KB chunks

    response = await client.delete(f"{FILES}/{file_id}", headers=auth_headers("alice"))

    assert response.status_code == 204
    assert await gridfs[0].count_documents({"_id": file_id}) == 0
    assert await _chunks_of(gridfs, file_id) == 0
    assert await _chunks_of(gridfs, kept_id) == 1  # the user's other file is untouched


async def test_delete_another_users_file_is_404_and_keeps_it(client, auth_headers, upload, gridfs):
    file_id = (await upload(text_pdf(2))).json()["file_id"]

    response = await client.delete(f"{FILES}/{file_id}", headers=auth_headers("bob"))

    assert response.status_code == 404
    assert response.json() == {"detail": f"File {file_id} not found"}
    assert await _chunks_of(gridfs, file_id) == 1


async def test_delete_unknown_file_is_404(client, auth_headers):
    response = await client.delete(f"{FILES}/no-such-file", headers=auth_headers("alice"))

    assert response.status_code == 404
    assert response.json() == {"detail": "File no-such-file not found"}


@pytest.mark.parametrize("status", [JobStatus.pending, JobStatus.processing])
async def test_delete_while_a_job_reads_the_file_is_409(
    client, auth_headers, upload, job_factory, gridfs, status
):
    file_id = (await upload(text_pdf(2))).json()["file_id"]
    job = await job_factory(file_id=file_id, status=status)

    response = await client.delete(f"{FILES}/{file_id}", headers=auth_headers("alice"))

    assert response.status_code == 409
    assert response.json() == {
        "detail": f"File {file_id} is being processed by job {job.job_id}: "
        "cancel the job or wait for it to finish, then delete the file"
    }
    assert await _chunks_of(gridfs, file_id) == 1


async def test_delete_after_the_job_finished_is_204(
    client, auth_headers, upload, job_factory, gridfs
):
    file_id = (await upload(text_pdf(2))).json()["file_id"]
    await job_factory(file_id=file_id, status=JobStatus.completed, progress=100)

    response = await client.delete(f"{FILES}/{file_id}", headers=auth_headers("alice"))

    assert response.status_code == 204
    assert await _chunks_of(gridfs, file_id) == 0


async def test_delete_frees_storage_quota(other_app, settings, auth_headers):
    one_mb = settings.model_copy(update={"storage_quota_mb": 1})
    files = {"file": ("a.pdf", b"%PDF-1.7\n" + b"x" * 700 * 1024, "application/pdf")}
    alice = auth_headers("alice")

    async with other_app(one_mb) as client:
        first = (await client.post(FILES, files=files, headers=alice)).json()["file_id"]
        refused = await client.post(FILES, files=files, headers=alice)
        await client.delete(f"{FILES}/{first}", headers=alice)
        accepted = await client.post(FILES, files=files, headers=alice)

    assert (refused.status_code, accepted.status_code) == (413, 201)


async def test_delete_requires_a_token(client, upload, gridfs):
    file_id = (await upload(text_pdf(1))).json()["file_id"]

    response = await client.delete(f"{FILES}/{file_id}")

    assert response.status_code == 401
    assert await _chunks_of(gridfs, file_id) == 1
