"""Uploads that stall, trickle or crowd in: 408 after UPLOAD_IDLE_TIMEOUT_S or below
UPLOAD_MIN_BYTES_PER_S, 429 past MAX_CONCURRENT_UPLOADS_PER_USER (counted in Redis, across app
instances), nothing kept.

Each upload's body comes from a ``HeldUpload``: it sends its first part, then waits for the test
to let it finish (or never does), so the tests order events without sleeping.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from devstack.embedded import free_port
from service.limits.upload_slots import key_of

BOUNDARY = "pcj-held"
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"
HEAD = (
    f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="a.pdf"\r\n'
    "Content-Type: application/pdf\r\n\r\n"
).encode()
TAIL = f"\r\n--{BOUNDARY}--\r\n".encode()


class HeldUpload:
    """A multipart upload body that sends ``data[:first]`` and then waits for ``release()``."""

    def __init__(self, data: bytes, first: int, before_stall=None) -> None:
        self.data, self.first, self.before_stall = data, first, before_stall
        self.started = asyncio.Event()  # the app pulled the body: it holds an upload slot
        self._go = asyncio.Event()

    def release(self) -> None:
        self._go.set()

    async def __aiter__(self):
        self.started.set()
        yield HEAD + self.data[: self.first]
        if self.before_stall is not None:
            await self.before_stall()
        await self._go.wait()
        yield self.data[self.first :] + TAIL


@pytest.fixture
def redis(app):
    return app.state.services.queue


async def stored_counts(db):
    return (
        await db["pdf_files.files"].count_documents({}),
        await db["pdf_files.chunks"].count_documents({}),
    )


def post(client, headers, body):
    return client.post(
        "/api/v1/files", content=body, headers={**headers, "Content-Type": CONTENT_TYPE}
    )


async def test_upload_that_stalls_is_408_and_its_written_chunks_are_removed(
    settings, other_app, cert_server, db, redis, pdf
):
    impatient = settings.model_copy(update={"upload_idle_timeout_s": 0.3})
    headers = {"Authorization": f"Bearer {cert_server.token('alice')}"}
    chunks_seen = []

    async def chunks_written():
        # The app asks for more body only once it has stored what it has: the first part's
        # chunks are in MongoDB now, and the 408 must remove them.
        chunks_seen.append(await db["pdf_files.chunks"].count_documents({}))

    held = HeldUpload(pdf, first=len(pdf) // 2, before_stall=chunks_written)

    async with other_app(impatient) as client:
        response = await post(client, headers, held)

    assert response.status_code == 408
    assert response.json() == {"detail": "Request body timed out: nothing received for 0.3 s"}
    assert chunks_seen == [4]  # 1 MB of the 2 MB PDF: four full 255 KB chunks
    assert await stored_counts(db) == (0, 0)
    assert await redis.zcard(key_of("alice")) == 0  # its slot is free again


class Trickle:
    """A multipart upload body that sends ``data[:first]``, then ``piece`` bytes every
    ``every_s`` (never idle for long) until ``pieces`` are sent, then the rest."""

    def __init__(self, data: bytes, first: int, piece: int, every_s: float, pieces: int) -> None:
        self.data, self.first, self.piece = data, first, piece
        self.every_s, self.pieces = every_s, pieces

    async def __aiter__(self):
        yield HEAD + self.data[: self.first]
        at = self.first
        for _ in range(self.pieces):
            await asyncio.sleep(self.every_s)
            yield self.data[at : at + self.piece]
            at += self.piece
        yield self.data[at:] + TAIL


async def test_upload_that_trickles_in_is_408_and_nothing_is_kept(
    settings, other_app, cert_server, db, redis, pdf
):
    # 10 bytes every 50 ms (200 bytes/s) never waits out a 1 s idle timeout, but falls below
    # 64 KB/s once the 0.3 s grace is over: a slot held for ever, a byte at a time.
    strict = settings.model_copy(
        update={
            "upload_idle_timeout_s": 1,
            "upload_min_bytes_per_s": 64 * 1024,
            "upload_rate_grace_s": 0.3,
        }
    )
    headers = {"Authorization": f"Bearer {cert_server.token('alice')}"}
    trickle = Trickle(pdf, first=1000, piece=10, every_s=0.05, pieces=40)

    async with other_app(strict) as client:
        response = await post(client, headers, trickle)

    assert response.status_code == 408
    assert response.json()["detail"].startswith("Request body too slow: ")
    assert response.json()["detail"].endswith("under the 65536 bytes/s required")
    assert await stored_counts(db) == (0, 0)
    assert await redis.zcard(key_of("alice")) == 0  # its slot is free again


async def test_fourth_concurrent_upload_is_429_and_the_three_complete(
    client, auth_headers, db, redis, pdf
):
    headers = auth_headers("alice")
    held = [HeldUpload(pdf, first=1000) for _ in range(3)]
    tasks = [asyncio.create_task(post(client, headers, body)) for body in held]
    for body in held:
        await body.started.wait()

    refused = await post(client, headers, HEAD + pdf + TAIL)

    assert refused.status_code == 429
    assert refused.json() == {
        "detail": "Too many uploads in progress: at most 3 at once per user; "
        "retry when one has finished"
    }
    assert refused.headers["retry-after"] == "5"
    assert await db["pdf_files.files"].count_documents({}) == 0
    for body in held:
        body.release()
    assert [response.status_code for response in await asyncio.gather(*tasks)] == [201] * 3
    assert await redis.zcard(key_of("alice")) == 0
    assert (await post(client, headers, HEAD + pdf + TAIL)).status_code == 201


async def test_upload_slots_are_counted_across_app_instances(
    client, settings, other_app, auth_headers, pdf
):
    headers = auth_headers("alice")
    held = [HeldUpload(pdf, first=1000) for _ in range(3)]
    tasks = [asyncio.create_task(post(client, headers, body)) for body in held]
    for body in held:
        await body.started.wait()

    async with other_app(settings) as second_instance:
        refused = await post(second_instance, headers, HEAD + pdf + TAIL)

    for body in held:
        body.release()
    await asyncio.gather(*tasks)
    assert refused.status_code == 429


async def test_another_users_uploads_do_not_count(client, auth_headers, pdf):
    held = [HeldUpload(pdf, first=1000) for _ in range(3)]
    tasks = [asyncio.create_task(post(client, auth_headers("alice"), body)) for body in held]
    for body in held:
        await body.started.wait()

    response = await post(client, auth_headers("bob"), HEAD + pdf + TAIL)

    for body in held:
        body.release()
    await asyncio.gather(*tasks)
    assert response.status_code == 201


async def test_leases_of_a_dead_process_expire(client, auth_headers, redis, pdf):
    # Three leases whose expiry passed long ago: a process that died mid-upload left them.
    await redis.zadd(key_of("alice"), {"dead-1": 1, "dead-2": 1, "dead-3": 1})

    response = await post(client, auth_headers("alice"), HEAD + pdf + TAIL)

    assert response.status_code == 201
    assert await redis.zcard(key_of("alice")) == 0


async def test_live_leases_elsewhere_refuse_the_upload_before_reading_it(
    client, auth_headers, redis, db, pdf
):
    far = 2**50  # leases held by other processes, not expiring during this test
    await redis.zadd(key_of("alice"), {"other-1": far, "other-2": far, "other-3": far})
    held = HeldUpload(pdf, first=1000)

    response = await post(client, auth_headers("alice"), held)

    assert response.status_code == 429
    assert not held.started.is_set()  # refused before a byte of the body was read
    assert await stored_counts(db) == (0, 0)


async def test_failed_upload_frees_its_slot(upload, redis):
    response = await upload(b"GIF89a" + b"\x00" * 5000)

    assert response.status_code == 415
    assert await redis.zcard(key_of("alice")) == 0


async def test_redis_down_lets_uploads_through_and_logs_it(
    settings, other_app, cert_server, db, caplog, pdf
):
    no_redis = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    headers = {"Authorization": f"Bearer {cert_server.token('alice')}"}

    with caplog.at_level(logging.WARNING, logger="service.upload_slot"):
        async with other_app(no_redis) as client:
            response = await post(client, headers, HEAD + pdf + TAIL)

    assert response.status_code == 201
    assert "upload concurrency not limited for uploads:alice" in caplog.text
    assert await db["pdf_files.files"].count_documents({}) == 1
