"""Which indexes each collection must have, for given settings."""

from __future__ import annotations

import pymongo
from pymongo import IndexModel

from service.settings import Settings
from service.store.collections import JOBS
from service.store.documents import INDEXES

Specification = dict[str, list[IndexModel]]


def job_ttl_index(settings: Settings) -> IndexModel:
    """Jobs expire ``JOB_TTL_DAYS`` after creation (604800 s by default, as the book-jobs
    contract's collection asks)."""
    return IndexModel(
        [("created_at", pymongo.ASCENDING)],
        name="created_at_ttl",
        expireAfterSeconds=settings.job_ttl_seconds,
    )


def specification(settings: Settings) -> Specification:
    """Every collection's indexes: those the store declares (``service/store/documents.py``),
    plus the settings-driven TTL."""
    spec: Specification = {name: list(indexes) for name, indexes in INDEXES.items()}
    spec[JOBS].append(job_ttl_index(settings))
    return spec
