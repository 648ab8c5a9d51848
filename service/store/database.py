"""Everything the service keeps, behind one object per process: ``Store``.

    store = await open_store(settings)          # waits for MongoDB at start-up
    await store.jobs.apply(write)               # job state (the one writer)
    await store.chapters.stored_pages(job_id)   # chapters, their pages, their index state
    await store.chunks.keyword(uid, q, ids, k)  # retrieval chunks and their vectors
    await store.files.find_owned(file_id, uid)  # uploaded PDFs (GridFS)
    await store.usage.stored_bytes(uid)         # what a user stores
    await store.locks.acquire(name, ...)        # named leases
    await store.workers.stale(seconds)          # workers that stopped beating
    await store.tombstones.of(job_id)           # deleted jobs a late run may still write for
    await store.images.put(key, data, type, owner=uid)  # page images: GridFS or S3, metered
    await store.aclose()

Every MongoDB read and write of the service goes through one of these; each reaches its
collections through ``store.collections`` (``service/store/collections.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pymongo import AsyncMongoClient

from service.settings import Settings
from service.store.chapters import ChapterStore
from service.store.chunks import ChunkStore
from service.store.collections import Collections
from service.store.files import FileStore
from service.store.jobs import JobStore
from service.store.locks import Locks
from service.store.mongo import connect
from service.store.page_images import PageStore, create_page_store
from service.store.page_images.metered import MeteredPageStore
from service.store.tombstones import Tombstones
from service.store.usage import Usage
from service.store.workers import Workers

Doc = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Store:
    """The client, the database's collections, and one repository per kind of document."""

    client: AsyncMongoClient[Doc]
    collections: Collections
    jobs: JobStore
    chapters: ChapterStore
    chunks: ChunkStore
    files: FileStore
    usage: Usage
    locks: Locks
    workers: Workers
    tombstones: Tombstones
    images: MeteredPageStore

    @classmethod
    def of(
        cls, client: AsyncMongoClient[Doc], settings: Settings, images: PageStore | None = None
    ) -> Store:
        """The store of ``settings.mongodb_db`` on ``client`` (no I/O); its page images in
        ``images``, else in the backend ``PAGE_STORE`` names, every byte of them counted
        against ``STORAGE_QUOTA_MB``."""
        collections = Collections.of(client[settings.mongodb_db])
        if images is None:
            images = create_page_store(settings, collections.db)
        usage = Usage(collections)
        metered = MeteredPageStore(images, usage, settings.storage_quota_bytes)
        return cls(
            client=client,
            collections=collections,
            jobs=JobStore(collections),
            chapters=ChapterStore(collections, metered),
            chunks=ChunkStore(collections),
            files=FileStore(collections),
            usage=usage,
            locks=Locks(collections),
            workers=Workers(collections),
            tombstones=Tombstones(collections),
            images=metered,
        )

    async def ping(self) -> None:
        """Raise unless MongoDB answers."""
        await self.client.admin.command("ping")

    async def aclose(self) -> None:
        """Release the page store, then close the client."""
        try:
            await self.images.aclose()
        finally:
            await self.client.close()


async def open_store(settings: Settings, *, wait_s: float | None = None) -> Store:
    """Connect (waiting up to ``MONGODB_STARTUP_WAIT_S`` for MongoDB) and build the store."""
    return Store.of(await connect(settings, wait_s=wait_s), settings)
