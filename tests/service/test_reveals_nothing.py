"""Another user's job, file, chapter or chunk is answered exactly like one that does not exist:
the same status, the same body and the same headers (no ETag, no rate-limit difference), so ids
cannot be probed. Seed 002's poll is the one contract that answers 403 for another user's job (the
seed says so); it then says nothing more than that.
"""

from __future__ import annotations

import pytest

from tests.support.pdfs import text_pdf

HIDDEN = [
    ("GET", "/api/v1/jobs/{job_id}"),
    ("DELETE", "/api/v1/jobs/{job_id}"),
    ("GET", "/api/v1/ingestion/job/{job_id}"),
    ("GET", "/api/v1/jobs/{job_id}/chunks"),
    ("GET", "/api/v1/chunks/{chunk_id}"),
    ("GET", "/api/v1/jobs/document/{file_id}"),
    ("GET", "/api/v1/books/book_1/chapters/{chapter_id}"),
    ("GET", "/api/v1/books/book_1/chapters/{chapter_id}/pages"),
    ("GET", "/api/v1/books/book_1/chapters/{chapter_id}/pages/1/words"),
]
# Differs per request by design, not per resource.
PER_REQUEST = {"x-request-id"}


@pytest.fixture
async def alices(submit, run_worker, index_chapters, client, auth_headers):
    """Ids of everything alice's completed and indexed job made."""
    job = await submit(text_pdf(3), user_id="alice")
    await run_worker()
    await index_chapters()
    done = (
        await client.get(f"/api/v1/books/jobs/{job['job_id']}", headers=auth_headers("alice"))
    ).json()
    chunks = await client.get(f"/api/v1/jobs/{job['job_id']}/chunks", headers=auth_headers("alice"))
    return {
        "job_id": job["job_id"],
        "chapter_id": done["result"]["chapter_id"],
        "chunk_id": chunks.json()["data"]["chunks"][0]["id"],
        "file_id": (
            await client.get(f"/api/v1/jobs/{job['job_id']}", headers=auth_headers("alice"))
        ).json()["documentId"],
    }


async def _forget_everything(app):
    db = app.state.services.store.collections.db
    for name in await db.list_collection_names():
        await db[name].delete_many({})
    await app.state.services.queue.flushall()  # rate-limit counters too


def _seen(response):
    headers = {k: v for k, v in response.headers.items() if k.lower() not in PER_REQUEST}
    return response.status_code, response.content, headers


@pytest.mark.parametrize(("method", "template"), HIDDEN)
async def test_another_users_resource_is_answered_exactly_like_a_missing_one(
    app, client, auth_headers, alices, queue, method, template
):
    url = template.format(**alices)
    await queue.flushall()

    theirs = await client.request(method, url, headers=auth_headers("bob"))
    await _forget_everything(app)
    missing = await client.request(method, url, headers=auth_headers("bob"))

    assert theirs.status_code == 404
    assert "etag" not in theirs.headers
    assert _seen(theirs) == _seen(missing)


async def test_seed_002_poll_of_another_users_job_says_only_access_denied(
    app, client, auth_headers, alices
):
    url = f"/api/v1/books/jobs/{alices['job_id']}"

    theirs = await client.get(url, headers={**auth_headers("bob"), "If-None-Match": "*"})
    await _forget_everything(app)
    missing = await client.get(url, headers=auth_headers("bob"))

    assert theirs.status_code == 403
    assert theirs.json() == {"detail": "Access denied to this job"}
    assert missing.status_code == 404
    # The same headers as a missing job's: no ETag, no Retry-After, nothing about the job.
    assert set(theirs.headers) - {"content-length"} == set(missing.headers) - {"content-length"}
    assert "etag" not in theirs.headers
    assert "retry-after" not in theirs.headers
