"""Server-sent events on the wire: framing, and the ASGI response that holds a stream open.

    retry: 2000

    id: 7
    event: progress
    data: {...}

    : keepalive

``EventStream`` writes a head (retry, current state, stored pages), then the subscription's
events until the job's terminal state, the client leaving, or the feed closing it. It renders a
page event per client (``render_page``: image URLs are signed for each request's origin).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import Any

from litestar.response.base import ASGIResponse
from litestar.types import HTTPResponseBodyEvent, Receive, Send

from service.store.feed import Closed, Kind, Subscription

log = logging.getLogger("service.events")

RETRY = b"retry: 2000\n\n"  # EventSource waits this long (ms) before reconnecting
KEEPALIVE = b": keepalive\n\n"
HEADERS = {
    "cache-control": "no-cache",
    # Tells nginx (and other proxies that honour it) not to buffer the stream.
    "x-accel-buffering": "no",
}
# Renders one stored page (its document) into the bytes of its event, for this stream's client.
RenderPage = Callable[[Mapping[str, Any]], Awaitable[bytes]]


def sse(event: str, data: bytes, event_id: int | None = None) -> bytes:
    """One server-sent event; ``data`` is one line of JSON."""
    head = (
        f"event: {event}\ndata: " if event_id is None else f"id: {event_id}\nevent: {event}\ndata: "
    )
    return head.encode() + data + b"\n\n"


def _body(data: bytes, *, more: bool) -> HTTPResponseBodyEvent:
    return {"type": "http.response.body", "body": data, "more_body": more}


async def _disconnected(receive: Receive) -> None:
    """Returns when the client has gone (the request's own body comes first)."""
    while (await receive())["type"] != "http.disconnect":
        pass


def _stop(pump: asyncio.Task[None], listener: asyncio.Task[None]) -> None:
    """The client is gone (or the server failed to tell): stop writing to it."""
    if not listener.cancelled():
        listener.exception()  # retrieved, so that asyncio does not report it as lost
    pump.cancel()


class EventStream(ASGIResponse):
    """The open stream: ``head`` (retry, current state, stored pages), then the subscription's
    events until the job's terminal state, the client leaving, or the feed closing it."""

    __slots__ = ("_head", "_pages", "_render_page", "_subscription", "_version")
    _should_set_content_length = False

    def __init__(
        self,
        head: bytes,
        subscription: Subscription | None,
        version: int,
        pages: set[int],
        render_page: RenderPage | None = None,
    ) -> None:
        super().__init__(headers=HEADERS, media_type="text/event-stream")
        self._head = head
        self._subscription = subscription
        self._version = version
        self._pages = pages
        self._render_page = render_page

    async def send_body(self, send: Send, receive: Receive) -> None:
        subscription = self._subscription
        if subscription is None:  # the job had already finished
            await send(_body(self._head, more=False))
            return
        loop = asyncio.get_running_loop()
        pump = loop.create_task(self._pump(send, subscription))
        # The client leaving ends the stream at once, even when nothing is being sent; and a
        # client too slow to read is cut off even while a write to it is blocked.
        listener = loop.create_task(_disconnected(receive))
        listener.add_done_callback(partial(_stop, pump))
        subscription.on_drop = pump.cancel
        try:
            await asyncio.wait([pump])
        finally:
            listener.cancel()
            pump.cancel()
            subscription.close()
        if not pump.cancelled() and (failure := pump.exception()) is not None:
            log.warning("event stream of job %s failed: %r", subscription.job_id, failure)
        elif subscription.closed is Closed.slow:
            log.info(
                "event stream of job %s dropped: the client is not reading", subscription.job_id
            )

    async def _pump(self, send: Send, subscription: Subscription) -> None:
        await send(_body(self._head, more=True))
        version, pages = self._version, self._pages
        terminal = False
        while not terminal:
            events = await subscription.take()
            if not events:  # closed: the process is stopping, or the client must catch up
                break
            out: list[bytes] = []
            for event in events:
                if event.kind is Kind.state:
                    if event.version <= version:
                        continue
                    version, terminal = event.version, event.terminal
                elif event.kind is Kind.page:
                    if event.page in pages:
                        continue
                    pages.add(event.page)
                    if event.doc is not None and self._render_page is not None:
                        out.append(await self._render_page(event.doc))
                        continue
                out.append(event.data)
                if terminal:
                    break
            if out:
                await send(_body(b"".join(out), more=True))
        await send(_body(b"", more=False))
