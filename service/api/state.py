"""What the app holds for its lifetime: clients created in the lifespan, read by handlers."""

from __future__ import annotations

from dataclasses import dataclass

from arq.connections import ArqRedis

from service.api.auth import TokenVerifier
from service.api.rate_limit import RateLimiter
from service.api.stream_token import StreamTokens
from service.settings import Settings
from service.store.feed import JobFeed
from service.store.mongo import Mongo
from service.store.page_images import PageStore
from service.store.reader import JobReader


@dataclass(frozen=True, slots=True)
class JobReaders:
    """One coalesced reader per polled view, each with its contract's projection."""

    status: JobReader  # seed 002
    detail: JobReader  # seeds 000/003
    ingestion: JobReader  # seed 001

    async def aclose(self) -> None:
        for reader in (self.status, self.detail, self.ingestion):
            await reader.aclose()


@dataclass(slots=True)
class Services:
    """Shared clients of one API process, stored as ``app.state.services``."""

    settings: Settings
    mongo: Mongo
    verifier: TokenVerifier
    queue: ArqRedis
    limiter: RateLimiter
    readers: JobReaders  # the polled endpoints' coalesced reads
    page_store: PageStore  # page images: GridFS or S3 (PAGE_STORE)
    feed: JobFeed  # the event streams' change feed (service/api/events.py)
    stream_tokens: StreamTokens
