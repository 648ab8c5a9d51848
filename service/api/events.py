"""A job's progress pushed to the browser: ``GET /api/v1/books/jobs/{job_id}/events``.

A ``text/event-stream`` for the job's owner, fed by the process's one ``JobFeed``
(service/store/feed.py):

    retry: 2000

    id: 7
    event: progress
    data: {...seed 002's JSON, exactly as the poll answers...}

    event: page
    data: {"page_number": 1, "total_pages": 40, "background_url": "...", "thumbnail_url": "...",
           "width": 1275, "height": 1650, "has_text": true}

    : keepalive

- The first event is the job's current state (``id:`` its version), then its pages stored so
  far, then one ``progress`` event per change (changes that land together may come as one) and a
  ``page`` event per page stored, with its image URLs (signed for this request's origin, like
  the chapter's; null for a ``pdf_file`` job) and size, so a viewer shows it at once. The
  stream ends after the terminal state (completed, failed, cancelled), which is always its last
  event; a job already finished gets only its state.
- ``Last-Event-ID`` (sent by ``EventSource`` when it reconnects) resumes: the current state is
  sent only when it is newer, and a finished job the client has seen finish answers 204, which
  tells ``EventSource`` to stop reconnecting. The stored pages are sent again on every connect;
  pages are identified by ``page_number``.
- A comment line every ``STREAM_HEARTBEAT_S`` keeps proxies from closing a quiet stream.
- Auth: the ``Authorization`` header, or ``?token=`` from ``POST .../stream-token``
  (service/api/stream_token.py) for ``EventSource``, which cannot send headers.
- Errors before the stream starts are the usual JSON: 401, 403 (another user's job, or a token
  for another job), 404, 400 (a malformed Last-Event-ID), 429 (more than
  ``STREAM_MAX_PER_USER`` streams open), 503 (MongoDB down, or ``STREAM_MAX_OPEN`` streams open
  in this process: poll instead).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from functools import partial
from typing import Any, cast

import msgspec
from litestar import Controller, Request, get, post
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, FromQuery
from litestar.response.base import ASGIResponse
from litestar.types import HTTPResponseBodyEvent, Receive, Send

from service.api.auth import Principal
from service.api.book_jobs import (
    ENCODE,
    JOB_STATUS_FIELDS,
    job_id_or_404,
    job_status_out,
    load_owned_job,
    owned_job,
)
from service.api.dependencies import PrincipalDep, services_of
from service.api.page_images import ImageUrls
from service.api.responses import ERROR_RESPONSES, Timestamp, error, iso_z
from service.domain.errors import BadRequest, ServiceError
from service.domain.job import JobStatus
from service.settings import Settings
from service.store.chapters import page_entry
from service.store.documents import DocumentChunk, JobDoc, PdfChapterJob
from service.store.feed import Closed, JobFeed, Kind, Subscription
from service.store.job_store import canonical_job_id

log = logging.getLogger("service.events")

RETRY = b"retry: 2000\n\n"  # EventSource waits this long (ms) before reconnecting
KEEPALIVE = b": keepalive\n\n"
HEADERS = {
    "cache-control": "no-cache",
    # Tells nginx (and other proxies that honour it) not to buffer the stream.
    "x-accel-buffering": "no",
}
# What a page event is made of (the page's text stays in MongoDB).
PAGE_FIELDS: dict[str, int] = {
    "_id": 0,
    "job_id": 1,
    "chunk_index": 1,
    "metadata.total_pages": 1,
    "image": 1,
    "thumbnail": 1,
    "has_text": 1,
}


class PageEventOut(msgspec.Struct, kw_only=True):
    """The data of a ``page`` event: one page stored, as the chapter will list it."""

    page_number: int
    total_pages: int
    background_url: str | None
    thumbnail_url: str | None
    width: int | None
    height: int | None
    has_text: bool


async def render_page(chunk: Mapping[str, Any], urls: ImageUrls) -> bytes:
    """A ``page`` event of one stored page (a ``document_chunks`` document projected on
    ``PAGE_FIELDS``), with no ``id:``: a reconnecting client resumes from the last state's."""
    page = await urls.page(page_entry(dict(chunk)))
    out = PageEventOut(
        page_number=page.page_number,
        total_pages=chunk["metadata"]["total_pages"],
        background_url=page.background_url,
        thumbnail_url=page.thumbnail_url,
        width=page.width,
        height=page.height,
        has_text=page.has_text,
    )
    return sse("page", ENCODE(out))


def sse(event: str, data: bytes, event_id: int | None = None) -> bytes:
    """One server-sent event; ``data`` is one line of JSON."""
    head = (
        f"event: {event}\ndata: " if event_id is None else f"id: {event_id}\nevent: {event}\ndata: "
    )
    return head.encode() + data + b"\n\n"


def render_state(doc: Mapping[str, object]) -> bytes:
    """A ``progress`` event: seed 002's JSON of the job, ``id:`` its version."""
    job = cast(JobDoc, doc)
    return sse("progress", ENCODE(job_status_out(job)), int(job.get("version", 0)))


def create_feed(settings: Settings) -> JobFeed:
    """The process's feed, over the collections Beanie is bound to (after ``connect``)."""
    return JobFeed(
        PdfChapterJob.get_pymongo_collection(),
        DocumentChunk.get_pymongo_collection(),
        job_fields=JOB_STATUS_FIELDS,
        page_fields=PAGE_FIELDS,
        render_state=render_state,  # pages are rendered per stream: their URLs are signed
        keepalive=KEEPALIVE,
        keepalive_s=settings.stream_heartbeat_s,
        queue_limit=settings.stream_queue_limit,
        poll_s=settings.stream_poll_interval_s,
    )


class TooManyStreams(ServiceError):
    status_code = 429
    code = "TOO_MANY_STREAMS"

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"Too many open event streams: at most {limit} per user. Close one, or poll the job",
            headers={"Retry-After": "5"},
        )


class StreamsFull(ServiceError):
    status_code = 503
    code = "SERVICE_UNAVAILABLE"

    def __init__(self) -> None:
        super().__init__(
            "Too many event streams open on this server: poll the job, or retry later",
            headers={"Retry-After": "5"},
        )


class StreamTokenOut(msgspec.Struct, kw_only=True):
    """A token for ``?token=`` on this job's event stream, for this user, until ``expires_at``."""

    token: str
    expires_at: Timestamp


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

    __slots__ = ("_head", "_pages", "_subscription", "_urls", "_version")
    _should_set_content_length = False

    def __init__(
        self,
        head: bytes,
        subscription: Subscription | None,
        version: int,
        pages: set[int],
        urls: ImageUrls | None = None,
    ) -> None:
        super().__init__(headers=HEADERS, media_type="text/event-stream")
        self._head = head
        self._subscription = subscription
        self._version = version
        self._pages = pages
        self._urls = urls

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
                    if event.doc is not None and self._urls is not None:
                        out.append(await render_page(event.doc, self._urls))
                        continue
                out.append(event.data)
                if terminal:
                    break
            if out:
                await send(_body(b"".join(out), more=True))
        await send(_body(b"", more=False))


def _last_event_id(request: Request[Any, Any, Any]) -> int | None:
    raw = (request.headers.get("last-event-id") or "").strip()
    if not raw:
        return None
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise BadRequest("Invalid Last-Event-ID: send back the id of an event this stream sent")
    return int(raw)


async def _caller(request: Request[Any, Any, Any], job_id: str, token: str | None) -> Principal:
    services = services_of(request)
    if token is not None:
        return services.stream_tokens.verify(token, job_id)
    return await services.verifier.authenticate(request.headers.get("authorization"))


class JobEventController(Controller):
    """A job's progress and pages, pushed as they are written (issue 14)."""

    path = "/api/v1/books/jobs"
    tags = ["book jobs"]  # noqa: RUF012 - Litestar reads a plain class attribute
    security = [{"BearerToken": []}]  # noqa: RUF012

    @post(
        "/{job_id:str}/stream-token",
        summary="A short-lived token for this job's event stream",
        description=(
            "For `EventSource`, which cannot send an Authorization header: pass the token as "
            "`?token=` to `GET /api/v1/books/jobs/{job_id}/events`. It is valid for this job and "
            "this user only, until `expires_at` (at most 10 minutes)."
        ),
        status_code=200,
        opt={"error_prefix": "Failed to create stream token"},
        responses=ERROR_RESPONSES,
    )
    async def stream_token(
        self, request: Request[Any, Any, Any], job_id: FromPath[str], principal: PrincipalDep
    ) -> StreamTokenOut:
        doc = await load_owned_job(job_id, principal, {"_id": 0, "job_id": 1, "user_id": 1})
        token, expires_at = services_of(request).stream_tokens.mint(
            doc["job_id"], principal.user_id
        )
        return StreamTokenOut(token=token, expires_at=iso_z(expires_at))

    @get(
        "/{job_id:str}/events",
        summary="Watch a job: its progress and pages pushed as server-sent events",
        description=(
            "`text/event-stream`: the job's current state (seed 002's JSON, `id:` its version), "
            "its pages stored so far, then a `progress` event per change and a `page` event per "
            "page stored, until the terminal state. Send `Last-Event-ID` to resume. "
            "Authenticate with the Authorization header or `?token=` (see stream-token)."
        ),
        opt={"error_prefix": "Failed to open event stream"},
        responses={
            200: ResponseSpec(
                str,
                media_type="text/event-stream",
                generate_examples=False,
                description="The event stream",
            ),
            204: ResponseSpec(
                None,
                generate_examples=False,
                description="The job finished and the client has seen its last event",
            ),
            **ERROR_RESPONSES,
            400: error("Malformed Last-Event-ID"),
            401: error("Missing or invalid ID token, or an invalid or expired stream token"),
            403: error("Another user's job, or a stream token for another job"),
            429: error("Too many streams open by this user; Retry-After"),
            503: error("MongoDB unreachable, or too many streams open on this server"),
        },
    )
    async def events(
        self,
        request: Request[Any, Any, Any],
        job_id: FromPath[str],
        token: FromQuery[str | None] = None,
    ) -> ASGIResponse:
        # Who is asking comes first, as on every endpoint (a token names its job canonically).
        principal = await _caller(request, canonical_job_id(job_id) or job_id, token)
        canonical = job_id_or_404(job_id)
        last_id = _last_event_id(request)
        services = services_of(request)
        feed = services.feed
        limit = services.settings.stream_max_per_user
        if feed.streams_of(principal.user_id) >= limit:
            raise TooManyStreams(limit)
        if feed.subscriptions >= services.settings.stream_max_open:
            raise StreamsFull
        # Subscribed before the read, so nothing written after the read can be missed.
        subscription = feed.subscribe(canonical, principal.user_id)
        try:
            # The polls' coalesced reader: after a resync every client reconnects at once. It
            # sends this read in a query of its own or a later one, never one already sent, so
            # the subscription above still comes first.
            current = await services.readers.status.read(canonical)
            doc = owned_job(current, canonical, principal)
            version = int(doc.get("version", 0))
            finished = JobStatus(doc["status"]).is_terminal
            if finished:
                subscription.close()
                if last_id == version:
                    return ASGIResponse(status_code=204, headers=HEADERS)
                return EventStream(RETRY + render_state(doc), None, version, set())
            head = [RETRY] if last_id == version else [RETRY, render_state(doc)]
            pages = await feed.stored_pages(canonical)
            urls = ImageUrls(request, services)
            head.extend([await render_page(page.doc or {}, urls) for page in pages])
        except BaseException:
            subscription.close()
            raise
        seen = {page.page for page in pages}
        return EventStream(b"".join(head), subscription, version, seen, urls)
