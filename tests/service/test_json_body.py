"""JSON bodies of every endpoint that reads one: capped while they stream, nesting bounded.

Bodies are fed to the app piece by piece from a generator that counts what the app pulled, so
"refused before it is read whole" is shown by the bytes the app asked for, not by a clock.
"""

from __future__ import annotations

import asyncio
import json

import pytest

KB = 1024
SEED_002 = "/api/v1/books/jobs"
SEED_003 = "/api/v1/jobs"
CREATED = {SEED_002: 202, SEED_003: 201}


def job_body(path: str, book_id: object = "book-1", file_id: str = "f") -> dict[str, object]:
    if path == SEED_003:
        return {"title": "Chapter", "payload": {"book_id": book_id, "file_id": file_id}}
    return {"book_id": book_id, "file_id": file_id}


class Feed:
    """A request body of ``total`` bytes, yielded ``piece`` bytes at a time, counting pulls."""

    def __init__(self, total: int, piece: int = 16 * KB, stall_after: int | None = None) -> None:
        self.total, self.piece, self.stall_after = total, piece, stall_after
        self.pulled = 0

    async def __aiter__(self):
        yield b'{"book_id": "'
        while self.pulled < self.total:
            if self.stall_after is not None and self.pulled >= self.stall_after:
                await asyncio.Event().wait()  # a client that stops sending
            self.pulled += self.piece
            yield b"a" * self.piece


@pytest.fixture
def jobs(app):
    return app.state.services.store.collections.db["pdf_chapter_jobs"]


@pytest.mark.parametrize("path", [SEED_002, SEED_003])
async def test_json_body_over_the_cap_is_413_before_it_is_read_whole(
    client, auth_headers, jobs, path
):
    feed = Feed(total=300 * 1024 * KB)
    headers = {**auth_headers("alice"), "Content-Type": "application/json"}

    response = await client.post(path, content=feed, headers=headers)

    assert response.status_code == 413
    assert response.json() == {"detail": "JSON body exceeds 64 KB"}
    assert feed.pulled <= 64 * KB + feed.piece  # of the 300 MB offered
    assert await jobs.count_documents({}) == 0


@pytest.mark.parametrize("path", [SEED_002, SEED_003])
async def test_declared_length_over_the_cap_is_413_without_reading(
    client, auth_headers, jobs, path
):
    feed = Feed(total=300 * 1024 * KB)
    headers = {
        **auth_headers("alice"),
        "Content-Type": "application/json",
        "Content-Length": str(300 * 1024 * KB),
    }

    response = await client.post(path, content=feed, headers=headers)

    assert response.status_code == 413
    assert feed.pulled == 0
    assert await jobs.count_documents({}) == 0


@pytest.mark.parametrize("path", [SEED_002, SEED_003])
async def test_json_body_of_exactly_the_cap_is_accepted(client, auth_headers, file_id, path):
    body = json.dumps(job_body(path, file_id=file_id)).encode()
    padded = body + b" " * (64 * KB - len(body))

    response = await client.post(
        path, content=padded, headers={**auth_headers("alice"), "Content-Type": "application/json"}
    )

    assert response.status_code == CREATED[path]


async def test_cap_follows_max_json_body_kb(settings, other_app, cert_server, app):
    small = settings.model_copy(update={"max_json_body_kb": 1})
    headers = {"Authorization": f"Bearer {cert_server.token('alice')}"}

    async with other_app(small) as client:
        response = await client.post(SEED_002, json=job_body(SEED_002, "b" * 2000), headers=headers)

    assert response.status_code == 413
    assert response.json() == {"detail": "JSON body exceeds 1 KB"}


def nested(levels: int) -> bytes:
    """A job body whose book_id holds arrays nested so the whole document is ``levels`` deep."""
    inner = levels - 1  # the outer object is one level
    return b'{"book_id": ' + b"[" * inner + b"]" * inner + b', "file_id": "f"}'


@pytest.mark.parametrize("levels", [33, 1000, 100_000])
async def test_deep_nesting_is_400_not_500(client, auth_headers, jobs, levels):
    response = await client.post(
        SEED_002,
        content=nested(levels)[: 64 * KB],
        headers={**auth_headers("alice"), "Content-Type": "application/json"},
    )

    assert response.status_code == 400
    assert response.json() == {"detail": "JSON body nested deeper than 32 levels"}
    assert await jobs.count_documents({}) == 0


async def test_seed_003_deep_nesting_is_400(client, auth_headers):
    body = b'{"title": "t", "payload": ' + b"[" * 1000 + b"]" * 1000 + b"}"

    response = await client.post(
        SEED_003,
        content=body,
        headers={**auth_headers("alice"), "Content-Type": "application/json"},
    )

    assert response.status_code == 400
    assert response.json() == {"detail": "JSON body nested deeper than 32 levels"}


async def test_nesting_of_32_levels_reaches_validation(client, auth_headers):
    response = await client.post(
        SEED_002,
        content=nested(32),
        headers={**auth_headers("alice"), "Content-Type": "application/json"},
    )

    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "book_id"


async def test_brackets_inside_strings_do_not_count_as_nesting(client, auth_headers, file_id):
    book_id = "[{" * 60 + '\\"[' * 4

    response = await client.post(
        SEED_002,
        content=f'{{"book_id": "{book_id}", "file_id": "{file_id}"}}'.encode(),
        headers={**auth_headers("alice"), "Content-Type": "application/json"},
    )

    assert response.status_code == 202
    assert response.json()["status"] == "pending"


@pytest.mark.parametrize("path", [SEED_002, SEED_003])
async def test_json_body_that_stalls_is_408(settings, other_app, cert_server, app, path):
    impatient = settings.model_copy(update={"upload_idle_timeout_s": 0.2})
    headers = {
        "Authorization": f"Bearer {cert_server.token('alice')}",
        "Content-Type": "application/json",
    }

    async with other_app(impatient) as client:
        response = await client.post(
            path, content=Feed(total=4 * KB, piece=KB, stall_after=KB), headers=headers
        )

    jobs = app.state.services.store.collections.db["pdf_chapter_jobs"]
    assert response.status_code == 408
    assert response.json() == {"detail": "Request body timed out: nothing received for 0.2 s"}
    assert await jobs.count_documents({}) == 0
