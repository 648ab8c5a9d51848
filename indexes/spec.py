"""Which indexes each collection must have, for given settings."""

from __future__ import annotations

import pymongo
from beanie import Document
from pymongo import IndexModel

from service.settings import Settings
from service.store.documents import DOCUMENT_MODELS, PdfChapterJob
from service.store.gridfs_page_store import BUCKET as PAGE_IMAGES_BUCKET
from service.store.gridfs_page_store import CHUNKS_INDEX as PAGE_IMAGE_CHUNKS_INDEX
from service.store.quota import QUOTA_INDEXES

Specification = dict[str, list[IndexModel]]


def job_ttl_index(settings: Settings) -> IndexModel:
    """Jobs expire ``JOB_TTL_DAYS`` after creation (seed 002: 604800 s by default)."""
    return IndexModel(
        [("created_at", pymongo.ASCENDING)],
        name="created_at_ttl",
        expireAfterSeconds=settings.job_ttl_seconds,
    )


def collection_name(model: type[Document]) -> str:
    """The collection a document class is stored in (readable before ``init_beanie``)."""
    name: str = model.Settings.name
    return name


def specification(settings: Settings) -> Specification:
    """Every collection's indexes: those declared on the documents, plus the settings-driven TTL."""
    spec: Specification = {
        collection_name(model): list(getattr(model.Settings, "indexes", []))
        for model in DOCUMENT_MODELS
    }
    spec[collection_name(PdfChapterJob)].append(job_ttl_index(settings))
    for name, indexes in QUOTA_INDEXES.items():  # GridFS files: per-user byte sums
        spec.setdefault(name, []).extend(indexes)
    # Page images are written chunk by chunk by the store, not by the GridFS driver (which
    # would create this index itself), so the index is ours to keep.
    spec[f"{PAGE_IMAGES_BUCKET}.chunks"] = [PAGE_IMAGE_CHUNKS_INDEX]
    return spec
