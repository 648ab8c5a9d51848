"""The memory a stalled upload holds, measured on a real API process (granian) through /proc.

Eight clients each send 12 MB of a PDF upload and then stop sending. With PyMongo's GridFS
writer every one of them held its 12 MB in the API (it inserts chunks only once ~48 MB have
gathered): measured +99 MB, nothing written. Now each chunk is inserted as it fills: measured
+18 MB for the eight (about 2 MB a connection, the same for 4 MB or 18 MB sent: connection and
driver buffers, not upload data). The test shows the chunks in MongoDB, the API's resident
memory grown by less than ``RSS_BOUND_MB`` while all eight are open, then every upload
answered 408 with nothing left behind.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest

from devstack.token import emulator_token
from service.store.files import CHUNK_SIZE
from tests.conftest import PROJECT_ID
from tests.support.pdfs import text_pdf
from tests.support.server import granian_api

UPLOADS = 8
SENT_BYTES = 12 * 1024 * 1024  # per upload, before it stalls
DECLARED_BYTES = 20 * 1024 * 1024  # the Content-Length each one promises
RSS_BOUND_MB = 40  # for all eight together; holding what they sent would be 96 MB
IDLE_TIMEOUT_S = 15
BOUNDARY = "pcj-memory"
HEAD = (
    f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="big.pdf"\r\n'
    "Content-Type: application/pdf\r\n\r\n"
).encode()
TAIL = f"\r\n--{BOUNDARY}--\r\n".encode()


@pytest.fixture(scope="module")
def api(settings, tmp_path_factory):
    log = tmp_path_factory.mktemp("api-memory") / "api.log"
    env = {"UPLOAD_IDLE_TIMEOUT_S": str(IDLE_TIMEOUT_S)}
    with granian_api(settings, PROJECT_ID, log, **env) as port:
        yield port


def api_pids(port: int) -> list[int]:
    """granian's main process and its workers: every process started with ``--port <port>``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        ours = b"granian" in b" ".join(argv) and b"--port" in argv
        if ours and argv[argv.index(b"--port") + 1] == str(port).encode():
            pids.append(int(entry.name))
    return pids


def rss_mb(port: int) -> float:
    """Resident memory of the whole API (all its processes), from /proc/<pid>/status."""
    total_kb = 0
    for pid in api_pids(port):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total_kb += int(line.split()[1])
    return total_kb / 1024


def pdf_of(size: int) -> bytes:
    """A real PDF padded with a comment line to ``size`` bytes."""
    data = text_pdf(2)
    return data + b"%" + b"x" * (size - len(data) - 1)


async def stalled_upload(port: int, user_id: str, data: bytes) -> tuple[int, dict]:
    """Send the request head and ``data``, promise more, send nothing else; return the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    length = len(HEAD) + DECLARED_BYTES + len(TAIL)
    head = (
        f"POST /api/v1/files HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {emulator_token(user_id, PROJECT_ID)}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()
    writer.write(head + HEAD)
    for start in range(0, len(data), 256 * 1024):
        writer.write(data[start : start + 256 * 1024])
        await writer.drain()
    try:
        answer = await reader.read()  # the server answers, then closes the connection
    finally:
        writer.close()
    status_line, _, rest = answer.partition(b"\r\n")
    _, _, body = rest.partition(b"\r\n\r\n")
    return int(status_line.split()[1]), json.loads(body)


async def test_stalled_uploads_hold_little_memory_and_leave_nothing(api, app):
    db = app.state.services.store.collections.db
    data = pdf_of(SENT_BYTES)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{api}") as client:
        # Warm up: one whole upload of the same size, so pools, caches and indexes exist.
        headers = {"Authorization": f"Bearer {emulator_token('warm', PROJECT_ID)}"}
        warm = await client.post(
            "/api/v1/files", files={"file": ("w.pdf", data, "application/pdf")}, headers=headers
        )
        assert warm.status_code == 201
        await db["pdf_files.chunks"].delete_many({})
        await db["pdf_files.files"].delete_many({})
    baseline = rss_mb(api)
    full_chunks = UPLOADS * (SENT_BYTES // CHUNK_SIZE)

    uploads = [asyncio.create_task(stalled_upload(api, f"user-{n}", data)) for n in range(UPLOADS)]
    written = 0
    for _ in range(600):  # a guard against a hang, not a timing assertion
        written = await db["pdf_files.chunks"].count_documents({})
        if written == full_chunks:
            break
        await asyncio.sleep(0.1)
    peak = max([rss_mb(api) for _ in range(5)])
    still_open = await db["pdf_files.chunks"].count_documents({})
    answers = await asyncio.gather(*uploads)

    print(f"\nAPI RSS {baseline:.0f} MB -> {peak:.0f} MB with {UPLOADS} stalled uploads")
    assert written == full_chunks, f"{written} of {full_chunks} chunks written (RSS {peak:.0f})"
    assert still_open == full_chunks  # sampled while all eight were still open
    assert peak - baseline < RSS_BOUND_MB
    assert (
        answers
        == [(408, {"detail": f"Request body timed out: nothing received for {IDLE_TIMEOUT_S} s"})]
        * UPLOADS
    )
    assert await db["pdf_files.files"].count_documents({}) == 0
    assert await db["pdf_files.chunks"].count_documents({}) == 0
