"""The page store the service uses: a backend (GridFS or S3) whose every byte is owned and
counted (``service/store/usage.py``).

    put(key, data, type, owner=...)        take the bytes against the owner's quota, then store
    put_file(key, path, type, owner=...)   the same for a large object, streamed
    hold(owner, holdings)                  take bytes stored elsewhere under a chapter (its text)
    delete_prefix(prefix)                  delete the objects, then give back all held there
    open, count, keys, url                 as the backend's

An owner is required: nothing reaches a backend uncounted. A put that would take its owner past
``STORAGE_QUOTA_MB`` stores nothing and raises ``StorageQuotaExceeded``. Reads pass through.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from service.domain.page_keys import check_key
from service.store.page_images.base import Backend, PageImage, PageStore
from service.store.usage import Holding, Kind, Usage


def kind_of(key: str) -> Kind:
    """What a page store key holds, by its name (``service/domain/page_keys.py``)."""
    name = key.rsplit("/", 1)[-1]
    if name.startswith("thumb-"):
        return "thumbnail"
    if name.endswith(".pdf"):
        return "pdf"
    return "page"


class MeteredPageStore:
    """``inner`` (a backend), with every byte taken from its owner's quota before it is written and
    given back when it is deleted."""

    def __init__(self, inner: PageStore, usage: Usage, quota_bytes: int) -> None:
        self.inner = inner
        self.backend: Backend = inner.backend
        self.usage = usage
        self.quota_bytes = quota_bytes

    async def put(self, key: str, data: bytes, content_type: str, *, owner: str) -> None:
        """Take ``len(data)`` bytes for ``owner`` under ``key``, then store the image."""
        check_key(key)
        if not data:
            raise ValueError("An image has at least one byte")
        await self.usage.take(owner, [Holding(key, len(data), kind_of(key))], self.quota_bytes)
        await self.inner.put(key, data, content_type, owner)

    async def put_many(self, images: list[tuple[str, bytes, str]], *, owner: str) -> None:
        """Take the bytes of several images (a page and its thumbnail) in one step, then store
        each: all of them fit, or none is stored."""
        for key, data, _ in images:
            check_key(key)
            if not data:
                raise ValueError("An image has at least one byte")
        holdings = [Holding(key, len(data), kind_of(key)) for key, data, _ in images]
        await self.usage.take(owner, holdings, self.quota_bytes)
        for key, data, content_type in images:
            await self.inner.put(key, data, content_type, owner)

    async def put_file(self, key: str, path: Path, content_type: str, *, owner: str) -> None:
        """Take the file's size for ``owner`` under ``key``, then stream it to the backend."""
        check_key(key)
        size = (await asyncio.to_thread(path.stat)).st_size
        if not size:
            raise ValueError("An object has at least one byte")
        await self.usage.take(owner, [Holding(key, size, kind_of(key))], self.quota_bytes)
        await self.inner.put_file(key, path, content_type, owner)

    async def hold(self, owner: str, holdings: list[Holding], what: str = "this chapter") -> None:
        """Take bytes stored elsewhere (a page's text in MongoDB) under a chapter's prefix: they
        are given back with the chapter."""
        await self.usage.take(owner, holdings, self.quota_bytes, what)

    async def open(self, key: str) -> PageImage | None:
        """The object at ``key``, or None."""
        return await self.inner.open(key)

    async def delete_prefix(self, prefix: str) -> int:
        """Delete every object under ``prefix``, then give back everything held there (its
        objects, and the text held beside them); how many objects were deleted."""
        deleted = await self.inner.delete_prefix(prefix)
        await self.usage.give_back(prefix)
        return deleted

    async def count(self, prefix: str) -> int:
        """How many objects are stored under ``prefix``."""
        return await self.inner.count(prefix)

    async def keys(self, prefix: str) -> set[str]:
        """The keys of the objects stored whole under ``prefix``."""
        return await self.inner.keys(prefix)

    async def url(self, key: str, expires_in_s: int) -> str | None:
        """A credential-free URL for ``key``, or None (the API signs its own)."""
        return await self.inner.url(key, expires_in_s)

    async def aclose(self) -> None:
        """Release what the backend holds."""
        await self.inner.aclose()
