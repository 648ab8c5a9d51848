"""GET /api/v1/books/jobs/{job_id}/events and its stream token, over a real server (granian):
httpx's ASGI transport buffers whole responses, so a stream can only be watched through a socket.

The job is written by this process, as the worker would write it, through the store's
``apply``; what the stream carries comes from the server's change streams.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import socket
import time
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import httpx
import pytest
from PIL import Image
from pymongo import AsyncMongoClient

from devstack.embedded import free_port, remove_tree, start_mongod
from devstack.token import emulator_token
from service.auth.stream_tokens import StreamTokens
from service.domain import lifecycle
from service.domain.job import JobStatus, utcnow
from service.domain.page_keys import chapter_prefix, page_key, thumbnail_key
from service.store.chapters import StoredPage
from tests.conftest import PROJECT_ID
from tests.support.server import granian_api
from tests.support.sse import WAIT_S, EventReader

SECRET = "test-stream-secret-0123456789-abcdef"
LEASE = "lease-1"
MAX_PER_USER = 3
MAX_OPEN = 8
QUEUE_LIMIT = 16
URL = "/api/v1/books/jobs/{}/events"
TOKEN_URL = "/api/v1/books/jobs/{}/stream-token"
ENV = {
    "STREAM_HEARTBEAT_S": "1",
    "STREAM_TOKEN_SECRET": SECRET,
    "STREAM_MAX_PER_USER": str(MAX_PER_USER),
    "STREAM_MAX_OPEN": str(MAX_OPEN),
    "STREAM_QUEUE_LIMIT": str(QUEUE_LIMIT),
}


def _headers(user_id="alice", **extra):
    return {"Authorization": f"Bearer {emulator_token(user_id, PROJECT_ID)}", **extra}


@pytest.fixture(scope="module")
def base_url(settings, tmp_path_factory):
    log = tmp_path_factory.mktemp("events") / "api.log"
    with granian_api(settings, PROJECT_ID, log, **ENV) as port:
        yield f"http://127.0.0.1:{port}"


@pytest.fixture
async def http(base_url, app):
    async with httpx.AsyncClient(base_url=base_url, timeout=WAIT_S) as client:
        yield client


@asynccontextmanager
async def watching(http, job_id, headers=None, params=None):
    """An open event stream of ``job_id``: (response, reader)."""
    async with http.stream(
        "GET", URL.format(job_id), headers=_headers() if headers is None else headers, params=params
    ) as response:
        yield response, EventReader(response)


async def _running(job_factory, user_id="alice", **fields):
    return await job_factory(
        user_id=user_id, status=JobStatus.processing, lease_id=LEASE, heartbeat_at=utcnow(),
        progress=30, message="Processed 0/3 pages...", **fields,
    )  # fmt: skip


async def _advance(apply, job_id, progress):
    return await apply(
        lifecycle.advance(job_id, LEASE, progress, f"Processed {progress}...", utcnow()),
        {"_id": 0, "version": 1},
    )


async def _complete(apply, job_id, pages=3):
    result = {"chapter_id": "3939f17c-a8ea-4000-be89-9e7e6f5ca4e9", "total_pages": pages}
    message = f"Chapter created successfully with {pages} pages"
    return await apply(lifecycle.complete(job_id, LEASE, result, message, utcnow()))


async def _poll(http, job_id, user_id="alice"):
    response = await http.get(f"/api/v1/books/jobs/{job_id}", headers=_headers(user_id))
    assert response.status_code == 200
    return response.json()


# --- The stream -------------------------------------------------------------------------------


async def test_first_event_is_the_polled_json_with_its_version_as_id(http, job_factory):
    job = await _running(job_factory, version=7)

    async with watching(http, job.job_id) as (response, reader):
        first_block = await reader.block()
        first = await reader.next()

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-accel-buffering"] == "no"
    assert first_block.retry == 2000
    assert (first.event, first.id) == ("progress", "7")
    assert first.json() == await _poll(http, job.job_id)
    assert list(first.json()) == [
        "job_id", "user_id", "book_id", "status", "progress", "message", "created_at", "updated_at",
    ]  # fmt: skip


async def test_changes_arrive_in_order_and_the_stream_ends_after_the_terminal_state(
    apply, http, job_factory
):
    job = await _running(job_factory)

    async with watching(http, job.job_id) as (_, reader):
        first = await reader.next()
        for progress in (40, 50, 60):
            await _advance(apply, job.job_id, progress)
        done = await _complete(apply, job.job_id)
        rest = await reader.rest()  # returns only when the server ends the stream

    ids = [int(event.id) for event in [first, *rest]]
    assert ids == sorted(set(ids)), "ids repeat or go backwards"
    assert [event.event for event in rest] == ["progress"] * len(rest)
    progress = [event.json()["progress"] for event in [first, *rest]]
    assert progress == sorted(progress)
    last = rest[-1]
    assert int(last.id) == done["version"]
    assert last.json() == await _poll(http, job.job_id)
    assert last.json()["status"] == "completed"
    assert last.json()["result"] == {
        "chapter_id": "3939f17c-a8ea-4000-be89-9e7e6f5ca4e9",
        "total_pages": 3,
    }


async def test_each_change_written_apart_is_its_own_event(apply, http, job_factory):
    job = await _running(job_factory)

    async with watching(http, job.job_id) as (_, reader):
        await reader.next()
        seen = []
        for progress in (40, 50, 60):
            written = await _advance(apply, job.job_id, progress)
            event = await reader.next()
            seen.append((int(event.id), event.json()["progress"]))
            assert int(event.id) == written["version"]

    assert [p for _, p in seen] == [40, 50, 60]


async def test_pages_stored_become_page_events_and_a_new_stream_catches_up(
    store, http, job_factory
):
    job = await _running(job_factory)
    doc = {"job_id": job.job_id, "user_id": "alice"}

    async with watching(http, job.job_id) as (_, reader):
        state = await reader.next()
        await store.chapters.write_pages(
            doc,
            "chapter-1",
            "a.pdf",
            3,
            [StoredPage(0, "one"), StoredPage(1, "two")],
        )
        pages = [await reader.next(), await reader.next()]
    async with watching(http, job.job_id) as (_, later):
        catch_up = [await later.next(), await later.next(), await later.next()]

    text_only = {
        "total_pages": 3, "background_url": None, "thumbnail_url": None,
        "width": None, "height": None, "has_text": True, "text_source": "pdf",
        "ocr_confidence": None,
    }  # fmt: skip
    assert [(p.event, p.id, p.json()) for p in pages] == [
        ("page", f"{state.id}.1", {"page_number": 1, **text_only}),
        ("page", f"{state.id}.2", {"page_number": 2, **text_only}),
    ]
    assert [e.event for e in catch_up] == ["progress", "page", "page"]
    assert [e.json() for e in catch_up[1:]] == [p.json() for p in pages]


def _webp(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 40, 40)).save(out, "WEBP")
    return out.getvalue()


async def test_page_events_carry_image_urls_that_open_with_no_credentials(
    http, base_url, app, job_factory
):
    job = await _running(job_factory)
    chapter_id = "5b1f0c1e-7d1a-4c55-9a57-3d2f0f6a4c11"
    images = app.state.services.store.images
    page_image = {"key": page_key(chapter_id, 1), "width": 120, "height": 160}
    thumb = {"key": thumbnail_key(chapter_id, 1), "width": 30, "height": 40}
    await images.put(page_image["key"], _webp(120, 160), "image/webp", owner="alice")
    await images.put(thumb["key"], _webp(30, 40), "image/webp", owner="alice")
    stored = StoredPage(0, "", has_text=False, image=page_image, thumbnail=thumb)
    doc = {"job_id": job.job_id, "user_id": "alice"}
    try:
        async with watching(http, job.job_id) as (_, reader):
            await reader.next()
            await app.state.services.store.chapters.write_pages(
                doc, chapter_id, "a.pdf", 2, [stored]
            )
            live = (await reader.next()).json()
        async with watching(http, job.job_id) as (_, later):
            await later.next()
            caught_up = (await later.next()).json()
        opened = {}
        async with httpx.AsyncClient() as browser:  # an <img>: no Authorization header
            for name in ("background_url", "thumbnail_url"):
                response = await browser.get(live[name])
                opened[name] = (response.status_code, response.headers["content-type"],
                                Image.open(io.BytesIO(response.content)).size)  # fmt: skip
    finally:
        await images.delete_prefix(chapter_prefix(chapter_id))

    assert {k: live[k] for k in ("page_number", "total_pages", "width", "height", "has_text")} == {
        "page_number": 1, "total_pages": 2, "width": 120, "height": 160, "has_text": False,
    }  # fmt: skip
    assert opened == {
        "background_url": (200, "image/webp", (120, 160)),
        "thumbnail_url": (200, "image/webp", (30, 40)),
    }
    assert live["background_url"].startswith(f"{base_url}/api/v1/page-images/")
    assert caught_up["width"] == 120
    assert caught_up["thumbnail_url"].split("?")[0] == live["thumbnail_url"].split("?")[0]


async def test_keepalive_comments_come_while_nothing_happens(http, job_factory):
    job = await _running(job_factory)

    async with watching(http, job.job_id) as (_, reader):
        await reader.next()
        block = await reader.block()

    assert block.comment == "keepalive"
    assert block.data is None


async def test_a_finished_job_gets_its_state_and_the_stream_ends(http, job_factory):
    job = await job_factory(status=JobStatus.failed, error="PDF is encrypted", version=4)

    async with watching(http, job.job_id) as (response, reader):
        events = await reader.rest()

    assert response.status_code == 200
    assert [(e.event, e.id) for e in events] == [("progress", "4")]
    assert events[0].json()["error"] == "PDF is encrypted"


# --- Resuming with Last-Event-ID ---------------------------------------------------------------


async def test_last_event_id_of_the_current_version_resumes_without_the_state(
    apply, http, job_factory
):
    job = await _running(job_factory, version=5)

    async with watching(http, job.job_id, headers=_headers(**{"Last-Event-ID": "5"})) as (
        _,
        reader,
    ):
        # The state is not sent again: the next event is the next change.
        await _advance(apply, job.job_id, 55)
        event = await reader.next()

    assert (event.id, event.json()["progress"]) == ("6", 55)
    assert [b.data for b in reader.seen if b.data is not None] == [event.data]


async def test_an_older_last_event_id_gets_the_current_state(http, job_factory):
    job = await _running(job_factory, version=5)

    async with watching(http, job.job_id, headers=_headers(**{"Last-Event-ID": "3"})) as (
        _,
        reader,
    ):
        event = await reader.next()

    assert event.id == "5"
    assert event.json() == await _poll(http, job.job_id)


async def test_a_finished_job_whose_end_was_seen_answers_204(http, job_factory):
    job = await job_factory(status=JobStatus.cancelled, version=9)

    response = await http.get(URL.format(job.job_id), headers=_headers(**{"Last-Event-ID": "9"}))

    assert response.status_code == 204  # EventSource stops reconnecting
    assert response.content == b""


@pytest.mark.parametrize(
    "value", ["abc", "-1", "1.5.2", "1.x", "1+2", "12345678901234567890", "٣".encode()]
)
async def test_a_malformed_last_event_id_is_a_400(http, job_factory, value):
    job = await _running(job_factory)

    response = await http.get(URL.format(job.job_id), headers=_headers(**{"Last-Event-ID": value}))

    assert response.status_code == 400
    assert response.json() == {
        "detail": "Invalid Last-Event-ID: send back the id of an event this stream sent"
    }


# --- Who may watch -----------------------------------------------------------------------------


async def test_another_users_job_is_403_and_nothing_is_streamed(http, job_factory):
    job = await _running(job_factory, user_id="alice")

    response = await http.get(URL.format(job.job_id), headers=_headers("bob"))

    assert response.status_code == 403
    assert response.json() == {"detail": "Access denied to this job"}


async def test_unknown_or_malformed_job_is_404(http, app):
    unknown = await http.get(URL.format("db67a850-1efd-41f7-88ed-b434ef108bc5"), headers=_headers())
    malformed = await http.get(URL.format("not-a-uuid"), headers=_headers())

    assert unknown.status_code == 404
    assert unknown.json() == {"detail": "Job db67a850-1efd-41f7-88ed-b434ef108bc5 not found"}
    assert malformed.status_code == 404


async def test_without_credentials_is_401(http, job_factory):
    job = await _running(job_factory)

    response = await http.get(URL.format(job.job_id))

    assert response.status_code == 401
    assert response.json() == {"detail": "Could not validate credentials"}


async def test_credentials_are_checked_before_anything_else(http, app):
    malformed_id = await http.get(URL.format("not-a-uuid"))
    malformed_resume = await http.get(
        URL.format("db67a850-1efd-41f7-88ed-b434ef108bc5"), headers={"Last-Event-ID": "x"}
    )

    assert malformed_id.status_code == 401
    assert malformed_resume.status_code == 401


async def test_a_stream_token_opens_the_stream_without_a_header(http, job_factory):
    job = await _running(job_factory, version=3)

    minted = await http.post(TOKEN_URL.format(job.job_id), headers=_headers())
    token = minted.json()["token"]
    async with watching(http, job.job_id, headers={}, params={"token": token}) as (
        response,
        reader,
    ):
        event = await reader.next()

    assert minted.status_code == 200
    assert set(minted.json()) == {"token", "expires_at"}
    expires_at = datetime.fromisoformat(minted.json()["expires_at"].replace("Z", "+00:00"))
    assert 0 < (expires_at - datetime.now(UTC)).total_seconds() <= 600
    assert response.status_code == 200
    assert event.id == "3"


async def test_a_stream_token_for_another_job_is_403(http, job_factory):
    mine, other = await _running(job_factory), await _running(job_factory)
    token = (await http.post(TOKEN_URL.format(mine.job_id), headers=_headers())).json()["token"]

    response = await http.get(URL.format(other.job_id), params={"token": token})

    assert response.status_code == 403
    assert response.json() == {"detail": "Access denied to this job"}


async def test_a_stream_token_for_another_users_job_is_refused(http, job_factory):
    job = await _running(job_factory, user_id="alice")

    minted = await http.post(TOKEN_URL.format(job.job_id), headers=_headers("bob"))
    unknown = await http.post(
        TOKEN_URL.format("db67a850-1efd-41f7-88ed-b434ef108bc5"), headers=_headers("bob")
    )

    assert minted.status_code == 403
    assert minted.json() == {"detail": "Access denied to this job"}
    assert unknown.status_code == 404


async def test_an_expired_stream_token_is_401(http, job_factory):
    job = await _running(job_factory)
    an_hour_ago = time.time() - 3600
    token, _ = StreamTokens(SECRET.encode(), 600, clock=lambda: an_hour_ago).mint(
        job.job_id, "alice"
    )

    response = await http.get(URL.format(job.job_id), params={"token": token})

    assert response.status_code == 401
    assert response.json() == {"detail": "Invalid or expired stream token"}


async def test_a_forged_stream_token_is_401(http, job_factory):
    job = await _running(job_factory, user_id="alice")
    token = (await http.post(TOKEN_URL.format(job.job_id), headers=_headers())).json()["token"]
    version, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["u"] = "mallory"
    forged_payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    signed_elsewhere, _ = StreamTokens(b"another secret", 600).mint(job.job_id, "alice")

    for bad in (f"{version}.{forged_payload}.{signature}", signed_elsewhere, "garbage", ""):
        response = await http.get(URL.format(job.job_id), params={"token": bad})
        assert response.status_code == 401, bad
        assert response.json() == {"detail": "Invalid or expired stream token"}


async def test_a_stream_token_is_not_an_id_token(http, job_factory):
    job = await _running(job_factory)
    token = (await http.post(TOKEN_URL.format(job.job_id), headers=_headers())).json()["token"]

    response = await http.get(
        f"/api/v1/books/jobs/{job.job_id}", headers={"Authorization": f"Bearer {token}"}
    )

    assert response.status_code == 401


async def _until_no_stream_is_open(http):
    """Wait until the server has let go of every stream (it notices a disconnect on its own
    schedule), so that the next test starts below the limits."""
    for _ in range(100):
        if "pcj_event_streams 0.0" in (await http.get("/metrics")).text:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the server still holds event streams after they were all closed")


async def _status_of_opening(http, job_id, headers):
    """The status a request for the stream gets; a stream that opens is closed at once."""
    response = await http.send(
        http.build_request("GET", URL.format(job_id), headers=headers), stream=True
    )
    await response.aclose()
    return response.status_code


async def test_more_streams_than_allowed_is_429_until_one_closes(http, job_factory):
    job = await _running(job_factory, user_id="carol")
    other = await _running(job_factory, user_id="dave")
    headers = _headers("carol")
    streams = [watching(http, job.job_id, headers=headers) for _ in range(MAX_PER_USER)]
    readers = [(await stream.__aenter__())[1] for stream in streams]  # kept: a dropped one closes
    for reader in readers:
        await reader.next()  # open and registered

    refused = await http.get(URL.format(job.job_id), headers=headers)
    for_others = await _status_of_opening(http, other.job_id, _headers("dave"))
    await streams[0].__aexit__(None, None, None)
    for _ in range(100):  # the server notices the disconnect on its own schedule
        again = await _status_of_opening(http, job.job_id, headers)
        if again != 429:
            break
        await asyncio.sleep(0.1)
    for stream in streams[1:]:
        await stream.__aexit__(None, None, None)
    await _until_no_stream_is_open(http)

    assert refused.status_code == 429
    assert refused.json() == {
        "detail": f"Too many open event streams: at most {MAX_PER_USER} per user. "
        "Close one, or poll the job"
    }
    assert refused.headers["retry-after"] == "5"
    assert for_others == 200
    assert again == 200


async def test_more_streams_than_the_process_holds_is_503(http, job_factory):
    users = [f"user-{n}" for n in range(MAX_OPEN // 2 + 1)]
    jobs = {user: await _running(job_factory, user_id=user) for user in users}
    opened, refused = [], None
    for attempt in range(MAX_OPEN + 1):
        user = users[attempt // 2]  # two each: no user reaches its own limit
        stream = watching(http, jobs[user].job_id, headers=_headers(user))
        response, reader = await stream.__aenter__()
        if response.status_code != 200:
            refused = response
            await response.aread()
            await stream.__aexit__(None, None, None)
            break
        await reader.next()
        opened.append((stream, reader))  # readers kept: a dropped one would close its stream
    for stream, _ in opened:
        await stream.__aexit__(None, None, None)
    await _until_no_stream_is_open(http)

    assert refused is not None, f"{len(opened)} streams opened, none refused"
    assert len(opened) <= MAX_OPEN
    assert refused.status_code == 503
    assert refused.json() == {
        "detail": "Too many event streams open on this server: poll the job, or retry later"
    }
    assert refused.headers["retry-after"] == "5"


# --- A client that does not read -----------------------------------------------------------------


def _open_unread_stream(port, job_id):
    """A raw socket that asks for the stream and then never reads (a tiny receive window)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    token = emulator_token("erin", PROJECT_ID)
    sock.sendall(
        f"GET {URL.format(job_id)} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
    )
    return sock


def _read_to_the_end(sock):
    """Everything the server sent, once it has closed the connection (fails if it never does:
    a stream that was not dropped goes on with its keepalive comments)."""
    sock.settimeout(WAIT_S)
    deadline = time.monotonic() + 3 * WAIT_S
    received = bytearray()
    try:
        while chunk := sock.recv(1 << 20):
            received += chunk
            assert time.monotonic() < deadline, "the server never hung up on the slow client"
    finally:
        sock.close()
    return bytes(received)


async def test_a_client_that_does_not_read_is_dropped_and_others_go_on(
    collections, http, base_url, job_factory
):
    job = await _running(job_factory, user_id="erin")
    slow = _open_unread_stream(int(base_url.rsplit(":", 1)[1]), job.job_id)
    jobs = collections.jobs
    big = "x" * 100_000  # each event ~100 KB: a few dozen fill the socket buffers

    async with watching(http, job.job_id, headers=_headers("erin")) as (_, reader):
        await reader.next()
        for _ in range(120):
            written = await jobs.find_one_and_update(
                {"job_id": job.job_id},
                {"$set": {"message": big}, "$inc": {"version": 1}},
                projection={"version": 1},
                return_document=True,
            )
            # Read by a client that keeps up, so every version is its own event.
            event = await reader.next()
            assert int(event.id) == written["version"]
        received = await asyncio.to_thread(_read_to_the_end, slow)

    # The slow client got what fitted in the socket buffers, and then the server hung up on it
    # well before the last event, instead of holding events for it.
    assert received.startswith(b"HTTP/1.1 200")
    assert received.count(b"event: progress") < 120


# --- Without a replica set -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def standalone(settings, tmp_path_factory):
    """A standalone mongod (no change streams) and the API under granian against it."""
    dbpath = tmp_path_factory.mktemp("standalone-db")
    server = start_mongod(dbpath, free_port(), replica_set=False)
    log = tmp_path_factory.mktemp("standalone-api") / "api.log"
    alone = settings.model_copy(update={"mongodb_url": server.url, "mongodb_db": "pcj_polling"})
    try:
        with granian_api(alone, PROJECT_ID, log, **ENV, STREAM_POLL_INTERVAL_S="0.2") as port:
            yield f"http://127.0.0.1:{port}", server.url
    finally:
        server.stop()
        remove_tree(dbpath)


async def test_without_a_replica_set_the_stream_is_fed_by_polling(standalone):
    base_url, mongo_url = standalone
    client = AsyncMongoClient(mongo_url, tz_aware=True)
    jobs, chunks = client.pcj_polling.pdf_chapter_jobs, client.pcj_polling.chapter_pages
    now = utcnow()
    job_id = "5b1d0c2e-8f43-4d55-9a0f-1c2b3d4e5f60"
    await jobs.insert_one({
        "job_id": job_id, "user_id": "alice", "book_id": "b", "file_id": "f",
        "status": "processing", "progress": 30, "message": "m", "lease_id": LEASE,
        "version": 1, "created_at": now, "updated_at": now,
    })  # fmt: skip

    async with (
        httpx.AsyncClient(base_url=base_url, timeout=WAIT_S) as http,
        watching(http, job_id) as (_, reader),
    ):
        first = await reader.next()
        await chunks.insert_one({
            "job_id": job_id, "page_index": 0, "created_at": utcnow(),
            "metadata": {"page_number": 1, "total_pages": 1, "source_file": "a.pdf"},
        })  # fmt: skip
        write = lifecycle.advance(job_id, LEASE, 60, "Processed 1/1 pages...", utcnow())
        await jobs.find_one_and_update(write.filter, write.pipeline)
        page, progress = await reader.next(), await reader.next()
        write = lifecycle.complete(
            job_id, LEASE, {"chapter_id": "c", "total_pages": 1}, "ok", utcnow()
        )
        await jobs.find_one_and_update(write.filter, write.pipeline)
        rest = await reader.rest()

    await client.drop_database("pcj_polling")
    await client.close()
    assert first.id == "1"
    assert (page.event, page.json()["page_number"], page.json()["total_pages"]) == ("page", 1, 1)
    assert (progress.id, progress.json()["progress"]) == ("2.1", 60)  # version 2, page 1
    assert [(e.id, e.json()["status"]) for e in rest] == [("3.1", "completed")]


# --- Reconnects, catch-up and the connect rate --------------------------------------------------


async def _write_pages(store, job_id, numbers, total=500):
    doc = {"job_id": job_id, "user_id": "alice"}
    pages = [StoredPage(number - 1, f"page {number}") for number in numbers]
    await store.chapters.write_pages(doc, "chapter-1", "a.pdf", total, pages)


async def test_a_reconnect_with_the_last_id_gets_only_the_pages_it_has_not_seen(
    store, http, job_factory
):
    job = await _running(job_factory)
    await _write_pages(store, job.job_id, [1, 2, 3, 5])
    async with watching(http, job.job_id) as (_, reader):
        first = [await reader.next() for _ in range(5)]  # the state, then four pages
    await _write_pages(store, job.job_id, [4, 6])

    last_id = first[-1].id
    async with watching(http, job.job_id, headers=_headers(**{"Last-Event-ID": last_id})) as (
        _,
        reader,
    ):
        resumed = [await reader.next(), await reader.next()]

    assert last_id == f"{first[0].id}.3+5"  # version, pages 1-3, and page 5
    assert [(e.event, e.json()["page_number"]) for e in resumed] == [("page", 4), ("page", 6)]
    assert resumed[-1].id == f"{first[0].id}.6"


async def test_an_id_that_is_a_version_alone_still_gets_every_page(store, http, job_factory):
    job = await _running(job_factory, version=4)
    await _write_pages(store, job.job_id, [1, 2])

    async with watching(http, job.job_id, headers=_headers(**{"Last-Event-ID": "4"})) as (
        _,
        reader,
    ):
        events = [await reader.next(), await reader.next()]

    assert [(e.event, e.json()["page_number"]) for e in events] == [("page", 1), ("page", 2)]


async def _asgi_stream(app, job_id, authorization, pages_wanted):
    """The body messages the app sends for the event stream of ``job_id``, in-process (httpx's
    ASGI transport joins them), until ``pages_wanted`` page events came; then the client goes."""
    messages: list[bytes] = []
    gone = asyncio.Event()

    async def receive():
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message):
        if message["type"] == "http.response.body" and message.get("body"):
            messages.append(message["body"])
            if sum(body.count(b"event: page") for body in messages) >= pages_wanted:
                gone.set()

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": URL.format(job_id), "raw_path": URL.format(job_id).encode(),
        "query_string": b"", "root_path": "", "server": ("testserver", 80),
        "client": ("127.0.0.1", 1), "headers": [(b"authorization", authorization.encode())],
        "state": {},
    }  # fmt: skip
    await asyncio.wait_for(app(scope, receive, send), WAIT_S)
    return messages


async def test_a_first_connect_to_a_long_job_sends_its_pages_in_bounded_batches(
    app, store, job_factory, auth_headers
):
    job = await _running(job_factory)
    await _write_pages(store, job.job_id, range(1, 251))

    messages = await _asgi_stream(app, job.job_id, auth_headers("alice")["Authorization"], 250)

    per_message = [body.count(b"event: page") for body in messages]
    assert sum(per_message) == 250
    assert max(per_message) <= 100  # never every page at once
    assert messages[0].count(b"event: progress") == 1


async def test_connects_past_the_rate_are_a_429_with_retry_after_and_other_users_go_on(
    other_app, settings, job_factory, auth_headers
):
    done = await job_factory(status=JobStatus.completed, progress=100)  # each connect ends at once
    bobs = await job_factory(user_id="bob", status=JobStatus.completed, progress=100)
    limited = settings.model_copy(update={"stream_connects_per_minute": 3})

    async with other_app(limited) as client:
        allowed = [
            (await client.get(URL.format(done.job_id), headers=auth_headers("alice"))).status_code
            for _ in range(3)
        ]
        refused = await client.get(URL.format(done.job_id), headers=auth_headers("alice"))
        other = await client.get(URL.format(bobs.job_id), headers=auth_headers("bob"))

    assert allowed == [200, 200, 200]
    assert refused.status_code == 429
    assert refused.json() == {
        "detail": "Rate limit exceeded: 3 event stream connects per 60 seconds"
    }
    assert int(refused.headers["retry-after"]) >= 1
    assert other.status_code == 200
