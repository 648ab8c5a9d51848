"""A request body read as it arrives, under a size cap, an idle timeout and a minimum rate.

Litestar's ``request.stream()`` enforces a route's ``request_max_body_size`` but never gives up on
a client that stops sending: a stalled upload would hold its memory and its GridFS chunks for as
long as the connection lives. Reading the ASGI messages here lets every wait for the next piece
of body end after ``UPLOAD_IDLE_TIMEOUT_S`` with a 408, and lets a declared ``Content-Length``
over the cap be refused before a byte of the body is read.

The idle timeout starts again with every byte, so a client sending one byte every few seconds
would pass it for ever, holding an upload slot. Past ``UPLOAD_RATE_GRACE_S`` the body must also
have arrived at ``UPLOAD_MIN_BYTES_PER_S`` on average: each wait for the next piece ends when the
bytes received so far would fall below that average, with a 408 too. An upload is held at most
``MAX_UPLOAD_MB`` / ``UPLOAD_MIN_BYTES_PER_S`` (100 MB at 8 KiB/s: 3.5 hours, slower than any
mobile link still in service).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

from litestar import Request

from service.domain.errors import ClientDisconnected, RequestTimeout, ServiceError


def declared_length(request: Request[Any, Any, Any]) -> int | None:
    """The ``Content-Length`` the client announced, or None (absent, chunked or not a number)."""
    raw = request.headers.get("content-length")
    if raw is None or not raw.isdigit():
        return None
    return int(raw)


async def body_chunks(
    request: Request[Any, Any, Any],
    *,
    max_bytes: int,
    idle_timeout_s: float,
    too_large: Callable[[], ServiceError],
    min_bytes_per_s: int = 0,
    rate_grace_s: float = 0.0,
) -> AsyncIterator[bytes]:
    """The body's pieces as the server hands them over; nothing is buffered here.

    Raises ``too_large()`` as soon as the announced or the received length passes
    ``max_bytes``, ``RequestTimeout`` (408) when no piece arrives for ``idle_timeout_s`` or, past
    ``rate_grace_s``, when the body so far averages less than ``min_bytes_per_s`` (0: no
    minimum), and ``ClientDisconnected`` when the client goes away mid-body.
    """
    announced = declared_length(request)
    if announced is not None and announced > max_bytes:
        raise too_large()
    received = 0
    started = time.monotonic()
    while True:
        wait, slow = idle_timeout_s, False
        if min_bytes_per_s > 0:
            # When the average would fall below the minimum, should nothing more arrive.
            due = started + max(rate_grace_s, received / min_bytes_per_s)
            if due - time.monotonic() < wait:
                wait, slow = max(0.0, due - time.monotonic()), True
        try:
            async with asyncio.timeout(wait):
                message = await request.receive()
        except TimeoutError:
            if slow:
                raise RequestTimeout(
                    f"Request body too slow: {received} bytes in "
                    f"{time.monotonic() - started:.1f} s, under the {min_bytes_per_s} bytes/s "
                    "required"
                ) from None
            raise RequestTimeout(
                f"Request body timed out: nothing received for {idle_timeout_s:g} s"
            ) from None
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        body = cast("bytes", message.get("body", b""))
        if body:
            received += len(body)
            if received > max_bytes:
                raise too_large()
            yield body
        if not message.get("more_body", False):
            return
