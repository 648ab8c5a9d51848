"""Which indexes each collection must have, for given settings."""

from __future__ import annotations

import pymongo
from beanie import Document
from pymongo import IndexModel

from service.settings import Settings
from service.store.documents import DOCUMENT_MODELS, PdfChapterJob
from service.store.files import BUCKET as UPLOADS_BUCKET
from service.store.grid_writer import CHUNKS_INDEX, bucket_indexes
from service.store.gridfs_page_store import BUCKET as PAGE_IMAGES_BUCKET
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
    # Uploads and page images are written chunk by chunk, not by the GridFS driver (which
    # would create these indexes itself), so they are ours to keep.
    for name, indexes in bucket_indexes(UPLOADS_BUCKET).items():
        spec.setdefault(name, []).extend(indexes)
    spec[f"{PAGE_IMAGES_BUCKET}.chunks"] = [CHUNKS_INDEX]
    return spec
