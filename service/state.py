"""What the app holds for its lifetime: clients created in the lifespan, read by handlers."""

from __future__ import annotations

from dataclasses import dataclass

from arq.connections import ArqRedis

from service.auth import TokenVerifier
from service.db import Mongo
from service.rate_limit import RateLimiter
from service.reads import JobReaders
from service.settings import Settings
from service.store.page_images import PageStore


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
