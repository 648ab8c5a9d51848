"""A job's progress pushed to the browser: ``GET /api/v1/books/jobs/{job_id}/events``.

A ``text/event-stream`` for the job's owner, fed by the process's one ``JobFeed``
(``service/store/feed/``):

    retry: 2000

    id: 7
    event: progress
    data: {...the book-jobs poll's JSON, exactly as the poll answers...}

    id: 7.1
    event: page
    data: {"page_number": 1, "total_pages": 40, "background_url": "...", "thumbnail_url": "...",
           "width": 1275, "height": 1650, "has_text": true}

    : keepalive

- The first event is the job's current state, then its pages stored so far (read and sent 100
  at a time), then one ``progress`` event per change (changes that land together may come as
  one) and a ``page`` event per page stored, with its image URLs (signed for this request's
  origin, like the chapter's; null for a ``pdf_file`` job) and size, so a viewer shows it at
  once. The stream ends after the terminal state (completed, failed, cancelled), which is always
  its last event; a job already finished gets only its state.
- Every event's ``id:`` says what the stream has sent: the job's version, then the pages
  (``7.12+15``: pages 1 to 12 and 15; ``service/domain/event_ids.py``). ``Last-Event-ID``
  (sent by ``EventSource`` when it reconnects) resumes: the state is sent only when it is newer,
  and only the pages the id does not name; a finished job the client has seen finish answers
  204, which tells ``EventSource`` to stop reconnecting. An id that is a version alone (what
  every id was before pages were counted) gets every page.
- A comment line every ``STREAM_HEARTBEAT_S`` keeps proxies from closing a quiet stream.
- Auth: the ``Authorization`` header, or ``?token=`` from ``POST .../stream-token``
  (service/auth/stream_tokens.py) for ``EventSource``, which cannot send headers.
- Errors before the stream starts are the usual JSON: 401, 403 (another user's job, or a token
  for another job), 404, 400 (a malformed Last-Event-ID), 429 (more than
  ``STREAM_CONNECTS_PER_MINUTE`` connects in 60 s, or ``STREAM_MAX_PER_USER`` streams open:
  ``Retry-After``), 503 (MongoDB down, or ``STREAM_MAX_OPEN`` streams open in this process:
  poll instead).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from typing import Any, cast

from litestar import Controller, Request, get, post
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, FromQuery
from litestar.response.base import ASGIResponse

from service.api.http.dependencies import PrincipalDep, services_of
from service.api.http.image_urls import ImageUrls
from service.api.http.sse import HEADERS, KEEPALIVE, EventStream, sse
from service.api.schemas.common import ERROR_RESPONSES, error, iso_z
from service.api.schemas.events import PageEventOut, StreamTokenOut
from service.api.schemas.jobs import ENCODE, JOB_STATUS_FIELDS, job_status_out
from service.auth.tokens import Principal
from service.domain.errors import BadRequest, JobNotFound
from service.domain.event_ids import Seen, parse_event_id
from service.domain.job import canonical_id
from service.jobs.events import follow_job, stream_token
from service.settings import Settings
from service.store.chapters import page_entry
from service.store.collections import Collections
from service.store.documents import JobDoc
from service.store.feed import Event, JobFeed

# What a page event is made of (the page's text stays in MongoDB).
PAGE_FIELDS: dict[str, int] = {
    "_id": 0,
    "job_id": 1,
    "page_index": 1,
    "metadata.total_pages": 1,
    "image": 1,
    "thumbnail": 1,
    "has_text": 1,
    "text_source": 1,
    "ocr_confidence": 1,
}


async def render_page(chunk: Mapping[str, Any], urls: ImageUrls) -> bytes:
    """A ``page`` event of one stored page (a ``chapter_pages`` document projected on
    ``PAGE_FIELDS``); its stream adds the id."""
    page = await urls.page(page_entry(dict(chunk)))
    out = PageEventOut(
        page_number=page.page_number,
        total_pages=chunk["metadata"]["total_pages"],
        background_url=page.background_url,
        thumbnail_url=page.thumbnail_url,
        width=page.width,
        height=page.height,
        has_text=page.has_text,
        text_source=page.text_source,
        ocr_confidence=page.ocr_confidence,
    )
    return sse("page", ENCODE(out))


def render_state(doc: Mapping[str, object]) -> bytes:
    """A ``progress`` event: the book-jobs poll's JSON of the job (its stream adds the id, the
    job's version first)."""
    return sse("progress", ENCODE(job_status_out(cast(JobDoc, doc))))


def create_feed(settings: Settings, collections: Collections) -> JobFeed:
    """The process's feed over the jobs and their pages."""
    return JobFeed(
        collections.jobs,
        collections.pages,
        job_fields=JOB_STATUS_FIELDS,
        page_fields=PAGE_FIELDS,
        render_state=render_state,  # pages are rendered per stream: their URLs are signed
        keepalive=KEEPALIVE,
        keepalive_s=settings.stream_heartbeat_s,
        queue_limit=settings.stream_queue_limit,
        poll_s=settings.stream_poll_interval_s,
    )


def _last_event_id(request: Request[Any, Any, Any]) -> Seen | None:
    raw = (request.headers.get("last-event-id") or "").strip()
    if not raw:
        return None
    try:
        return parse_event_id(raw)
    except ValueError:
        raise BadRequest(
            "Invalid Last-Event-ID: send back the id of an event this stream sent"
        ) from None


async def _caller(request: Request[Any, Any, Any], job_id: str, token: str | None) -> Principal:
    services = services_of(request)
    if token is not None:
        return services.stream_tokens.verify(token, job_id)
    return await services.verifier.authenticate(request.headers.get("authorization"))


class JobEventController(Controller):
    """A job's progress and pages, pushed as they are written."""

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
        token, expires_at = await stream_token(services_of(request), job_id, principal.user_id)
        return StreamTokenOut(token=token, expires_at=iso_z(expires_at))

    @get(
        "/{job_id:str}/events",
        summary="Watch a job: its progress and pages pushed as server-sent events",
        description=(
            "`text/event-stream`: the job's current state (the poll's JSON), its pages stored "
            "so far, then a `progress` event per change and a `page` event per page stored, "
            "until the terminal state. Each `id:` names the job's version and the pages sent "
            "(`7.12+15`); send it back as `Last-Event-ID` to get only the rest. "
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
            429: error("Too many connects or streams open by this user; Retry-After"),
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
        principal = await _caller(request, canonical_id(job_id) or job_id, token)
        canonical = canonical_id(job_id)
        if canonical is None:
            raise JobNotFound(job_id)
        last = _last_event_id(request)
        services = services_of(request)
        following = await follow_job(
            services, services.readers.status, canonical, principal.user_id
        )
        doc, subscription = following.job, following.subscription
        version = int(doc.get("version", 0))
        seen = last or Seen()
        if subscription is None:  # finished
            if last is not None and last.version == version:
                return ASGIResponse(status_code=204, headers=HEADERS)
            seen.version = version
            return EventStream(render_state(doc), None, seen)
        urls = ImageUrls(request, services)
        state = None if last is not None and last.version >= version else render_state(doc)
        seen.version = max(seen.version, version)

        async def page_event(chunk: Mapping[str, Any]) -> bytes:
            return await render_page(chunk, urls)

        def catch_up(after: int) -> AsyncGenerator[list[Event], None]:
            return services.feed.stored_pages(canonical, after=after)

        return EventStream(state, subscription, seen, catch_up, page_event)
