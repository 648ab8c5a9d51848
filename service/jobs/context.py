"""What the use cases run with: one ``Context`` per process, made at start-up."""

from __future__ import annotations

from dataclasses import dataclass

from arq.connections import ArqRedis

from service.auth.stream_tokens import StreamTokens
from service.limits.rate_limit import RateLimiter
from service.retrieval.model import ModelSpec
from service.retrieval.process import EmbeddingProcess
from service.retrieval.ranking import ScopeCache
from service.settings import Settings
from service.store.database import Store
from service.store.feed import JobFeed


@dataclass(kw_only=True)
class Context:
    """The settings, the store, the queue's doorbell, the rate limiter, the change feed, the
    stream tokens and what search needs (the model, its process, the vectors kept) of one
    process."""

    settings: Settings
    store: Store
    queue: ArqRedis  # the doorbell (arq's Redis), also where upload slots are counted
    limiter: RateLimiter
    feed: JobFeed
    stream_tokens: StreamTokens
    model: ModelSpec  # the embedding model: chapters indexed by another are stale
    embeddings: EmbeddingProcess  # embeds queries; its process starts with the first search
    vectors: ScopeCache[str]  # each chapter's vectors, by (user, chapter, indexed_at)
