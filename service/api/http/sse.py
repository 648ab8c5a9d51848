"""Server-sent events on the wire: framing, and the ASGI response that holds a stream open.

    retry: 2000

    id: 7.12
    event: progress
    data: {...}

    : keepalive

``EventStream`` writes a head (retry, and the job's state unless the client has it), then the
stored pages the client has not seen, a batch at a time, then the subscription's events until
the job's terminal state, the client leaving, or the feed closing it. Every event carries the id
of all it has sent (``service/domain/event_ids.py``): the job's version and the pages seen. It
renders a page event per client (``render_page``: image URLs are signed for each request's
origin).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from functools import partial
from typing import Any

from litestar.response.base import ASGIResponse
from litestar.types import HTTPResponseBodyEvent, Receive, Send

from service.domain.event_ids import Seen
from service.store.feed import Closed, Event, Kind, Subscription

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
# The stored pages past those a client has seen (page ``after`` and before), in page order, a
# batch at a time.
CatchUp = Callable[[int], AsyncGenerator[list[Event], None]]


def sse(event: str, data: bytes) -> bytes:
    """One server-sent event, without its id (each stream adds its own: ``with_id``); ``data``
    is one line of JSON."""
    return f"event: {event}\ndata: ".encode() + data + b"\n\n"


def with_id(event: bytes, seen: Seen) -> bytes:
    """``event`` with the id of everything its stream has sent, this event included."""
    return b"id: " + seen.event_id().encode() + b"\n" + event


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
    """The open stream: ``head`` (retry, and the job's state unless the client has it), the
    stored pages the client has not seen (``catch_up``), then the subscription's events until
    the job's terminal state, the client leaving, or the feed closing it. ``seen``: what the
    client has seen, updated as events are sent."""

    __slots__ = ("_catch_up", "_render_page", "_seen", "_state", "_subscription")
    _should_set_content_length = False

    def __init__(
        self,
        state: bytes | None,
        subscription: Subscription | None,
        seen: Seen,
        catch_up: CatchUp | None = None,
        render_page: RenderPage | None = None,
    ) -> None:
        super().__init__(headers=HEADERS, media_type="text/event-stream")
        self._state = state
        self._subscription = subscription
        self._seen = seen
        self._catch_up = catch_up
        self._render_page = render_page

    def _head(self) -> bytes:
        return RETRY + (with_id(self._state, self._seen) if self._state is not None else b"")

    async def send_body(self, send: Send, receive: Receive) -> None:
        subscription = self._subscription
        if subscription is None:  # the job had already finished
            await send(_body(self._head(), more=False))
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

    async def _page(self, event: Event) -> bytes | None:
        """A page's event, once per page; None for a page the client has."""
        number = event.page + 1
        if number in self._seen:
            return None
        self._seen.add(number)
        data = event.data
        if event.doc is not None and self._render_page is not None:
            data = await self._render_page(event.doc)
        return with_id(data, self._seen)

    async def _pump(self, send: Send, subscription: Subscription) -> None:
        await send(_body(self._head(), more=True))
        if self._catch_up is not None:
            # Each batch written (and the client's socket drained) before the next is read.
            async with contextlib.aclosing(self._catch_up(self._seen.through)) as batches:
                async for batch in batches:
                    pages = [data for event in batch if (data := await self._page(event))]
                    if pages:
                        await send(_body(b"".join(pages), more=True))
        seen = self._seen
        terminal = False
        while not terminal:
            events = await subscription.take()
            if not events:  # closed: the process is stopping, or the client must catch up
                break
            out: list[bytes] = []
            for event in events:
                if event.kind is Kind.state:
                    if event.version <= seen.version:
                        continue
                    seen.version, terminal = event.version, event.terminal
                    out.append(with_id(event.data, seen))
                elif event.kind is Kind.page:
                    if (data := await self._page(event)) is not None:
                        out.append(data)
                else:
                    out.append(event.data)
                if terminal:
                    break
            if out:
                await send(_body(b"".join(out), more=True))
        await send(_body(b"", more=False))
