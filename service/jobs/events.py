"""Following a job: opening its event stream, and the short-lived token ``EventSource`` uses."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from service.domain.errors import StreamsFull, TooManyStreams
from service.domain.job import JobStatus
from service.jobs.access import Others, caller_job
from service.jobs.context import Context
from service.store.documents import JobDoc
from service.store.feed import Subscription
from service.store.reader import JobReader


@dataclass(frozen=True, slots=True)
class Following:
    """A stream's start: the job now, and its subscription (None: it had finished). Its stored
    pages are read by the stream itself, a batch at a time, past what the client has seen."""

    job: JobDoc
    subscription: Subscription | None


async def follow_job(ctx: Context, reader: JobReader, job_id: str, user_id: str) -> Following:
    """Subscribe to ``job_id`` (canonical), then read it: whatever is written after the read is
    sure to arrive. 429 past ``STREAM_CONNECTS_PER_MINUTE`` connects in any 60 s (counted in
    Redis across API processes, before anything is read: a connect costs a read of the job and
    of every page the client has not seen) or past ``STREAM_MAX_PER_USER`` streams open; 503
    past ``STREAM_MAX_OPEN``."""
    feed, settings = ctx.feed, ctx.settings
    await ctx.limiter.hit(
        f"stream_connect:{user_id}", settings.stream_connects_per_minute, "event stream connects"
    )
    if feed.streams_of(user_id) >= settings.stream_max_per_user:
        raise TooManyStreams(settings.stream_max_per_user)
    if feed.subscriptions >= settings.stream_max_open:
        raise StreamsFull
    subscription = feed.subscribe(job_id, user_id)
    try:
        # The polls' coalesced reader: after a resync every client reconnects at once. It sends
        # this read in a query of its own or a later one, never one already sent, so the
        # subscription above still comes first.
        job = await caller_job(job_id, user_id, reader=reader, others=Others.forbid)
        if JobStatus(job["status"]).is_terminal:
            subscription.close()
            return Following(job, None)
    except BaseException:
        subscription.close()
        raise
    return Following(job, subscription)


async def stream_token(ctx: Context, raw_job_id: str, user_id: str) -> tuple[str, datetime]:
    """A token for ``?token=`` on the caller's job's event stream, and when it expires."""
    job = await caller_job(raw_job_id, user_id, jobs=ctx.store.jobs, others=Others.forbid)
    return ctx.stream_tokens.mint(job["job_id"], user_id)
