"""A request body read as it arrives, under a size cap and an idle timeout.

Litestar's ``request.stream()`` enforces a route's ``request_max_body_size`` but never gives up on
a client that stops sending: a stalled upload would hold its memory and its GridFS chunks for as
long as the connection lives. Reading the ASGI messages here lets every wait for the next piece
of body end after ``UPLOAD_IDLE_TIMEOUT_S`` with a 408, and lets a declared ``Content-Length``
over the cap be refused before a byte of the body is read.
"""

from __future__ import annotations

import asyncio
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
) -> AsyncIterator[bytes]:
    """The body's pieces as the server hands them over; nothing is buffered here.

    Raises ``too_large()`` as soon as the announced or the received length passes
    ``max_bytes``, ``RequestTimeout`` (408) when no piece arrives for ``idle_timeout_s``, and
    ``ClientDisconnected`` when the client goes away mid-body.
    """
    announced = declared_length(request)
    if announced is not None and announced > max_bytes:
        raise too_large()
    received = 0
    while True:
        try:
            async with asyncio.timeout(idle_timeout_s):
                message = await request.receive()
        except TimeoutError:
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
