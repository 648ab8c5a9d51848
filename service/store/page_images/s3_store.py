"""Page images in any S3-compatible store, through obstore (async, native, no botocore).

One object per image, written with a single PUT: S3 replaces an object whole, so a retried
page simply overwrites its key. A large object (``put_file``) is a multipart upload read from
its file part by part. Each object carries its owner as user metadata. Browsers fetch images
straight from the store, by a presigned GET URL or, with ``PAGE_PUBLIC_BASE_URL`` (a CDN in
front of the bucket), by base + key.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import obstore
from obstore.exceptions import (
    BaseError,
    GenericError,
    NotFoundError,
)
from obstore.store import S3Store

from service.domain.errors import PageStoreError, PageStoreUnavailable
from service.domain.page_keys import check_key, check_prefix, content_type_of
from service.store.page_images.base import Backend, PageImage, PageStoreConfig

if TYPE_CHECKING:
    from obstore import Attributes, GetResult
    from obstore.store import ClientConfig, RetryConfig, S3Config

# obstore retries connection errors, 5xx and timeouts itself (10 times over up to 3 minutes by
# default). A page write that cannot land within half a minute fails, and the job retries.
CLIENT_OPTIONS: ClientConfig = {
    "connect_timeout": timedelta(seconds=5),
    "timeout": timedelta(seconds=30),
}
RETRY: RetryConfig = {"max_retries": 3, "retry_timeout": timedelta(seconds=30)}
# A large object's parts: S3's smallest part (5 MB), one at a time. The worker then grew by
# 12 MB for a 30 MB or a 90 MB file; two at a time, by 15 to 21 MB; obstore's default of 12 at
# once would hold more than 60 MB. A part of 5 MB takes well under a second to any S3.
PART_BYTES = 5 * 1024 * 1024
PARTS_IN_FLIGHT = 1
_T = TypeVar("_T")


async def _pieces(path: Path) -> AsyncIterator[bytes]:
    """The file at ``path``, a megabyte at a time, read off the event loop."""
    with path.open("rb") as source:
        while piece := await asyncio.to_thread(source.read, 1024 * 1024):
            yield piece


def _attributes(content_type: str, owner: str | None) -> Attributes:
    """The object's Content-Type, and its owner as user metadata (``x-amz-meta-user-id``)."""
    attributes: Attributes = {"Content-Type": content_type}
    if owner is not None:
        attributes["user-id"] = owner
    return attributes


async def _guarded(operation: Awaitable[_T]) -> _T:
    """``operation``'s result; obstore failures become the page store's own errors."""
    try:
        return await operation
    except GenericError as exc:
        # What obstore reports once its retries of a connection error, a timeout or a 5xx
        # are spent (and also a missing bucket, which no retry cures: the log says which).
        raise PageStoreUnavailable(f"S3 unreachable: {type(exc).__name__}") from exc
    except BaseError as exc:  # permission, credentials, configuration
        raise PageStoreError(f"S3 page store failed: {type(exc).__name__}") from exc


class S3PageStore:
    """The ``s3`` backend."""

    backend: Backend = "s3"

    def __init__(self, store: S3Store, public_base_url: str | None = None) -> None:
        self._store = store
        self._public_base_url = public_base_url.rstrip("/") + "/" if public_base_url else None

    @classmethod
    def from_config(cls, config: PageStoreConfig) -> S3PageStore:
        """A store for ``S3_BUCKET`` at ``S3_ENDPOINT_URL`` (AWS itself when unset)."""
        if not config.s3_bucket:
            raise ValueError("PAGE_STORE=s3 needs S3_BUCKET")
        endpoint = config.s3_endpoint_url
        # Unset values are left out: obstore then reads AWS_* variables or instance credentials.
        optional: S3Config = {}
        if endpoint:
            optional["endpoint"] = endpoint
        if config.s3_access_key_id and config.s3_secret_access_key:
            optional["access_key_id"] = config.s3_access_key_id
            optional["secret_access_key"] = config.s3_secret_access_key.get_secret_value()
        store = S3Store(
            config.s3_bucket,
            config={
                **optional,
                "region": config.s3_region,
                # Path-style (endpoint/bucket/key): every S3-compatible server understands it.
                "virtual_hosted_style_request": False,
            },
            client_options={
                **CLIENT_OPTIONS,
                "allow_http": bool(endpoint and endpoint.startswith("http:")),
            },
            retry_config=RETRY,
        )
        return cls(store, config.page_public_base_url)

    async def put(self, key: str, data: bytes, content_type: str, owner: str | None = None) -> None:
        """Write ``data`` to ``key`` with one PUT (S3 replaces the object whole)."""
        check_key(key)
        if not data:
            raise ValueError("An image has at least one byte")
        await _guarded(
            obstore.put_async(
                self._store,
                key,
                data,
                attributes=_attributes(content_type, owner),
                use_multipart=False,
            )
        )

    async def put_file(
        self, key: str, path: Path, content_type: str, owner: str | None = None
    ) -> None:
        """Stream the file at ``path`` to ``key`` as a multipart upload of ``PART_BYTES``
        parts, ``PARTS_IN_FLIGHT`` at once; the object appears whole when the upload completes
        (an aborted one leaves nothing visible).

        The file is handed to obstore in pieces we read, not as a path: given a path, obstore
        read ahead of its uploads (17 MB more for a 30 MB file, 28 MB for 90 MB, measured
        alone), while pieces keep it at the parts in flight whatever the size."""
        check_key(key)
        await _guarded(
            obstore.put_async(
                self._store,
                key,
                _pieces(path),
                attributes=_attributes(content_type, owner),
                use_multipart=True,
                chunk_size=PART_BYTES,
                max_concurrency=PARTS_IN_FLIGHT,
            )
        )

    async def open(self, key: str) -> PageImage | None:
        """The object at ``key`` (its metadata now, its bytes as they are read), or None."""
        check_key(key)
        result = await _guarded(self._get(key))
        if result is None:
            return None
        meta = result.meta
        return PageImage(
            key=key,
            length=meta["size"],
            content_type=result.attributes.get("Content-Type") or content_type_of(key),
            etag=meta["e_tag"] or f'"{meta["last_modified"].timestamp()}-{meta["size"]}"',
            chunks=self._chunks_of(result),
        )

    async def _get(self, key: str) -> GetResult | None:
        try:
            return await obstore.get_async(self._store, key)
        # obstore raises Python's own FileNotFoundError for a missing object.
        except (FileNotFoundError, NotFoundError):
            return None

    @staticmethod
    async def _chunks_of(result: GetResult) -> AsyncIterator[bytes]:
        stream = result.stream()
        while True:
            try:
                chunk = await _guarded(stream.__anext__())
            except StopAsyncIteration:
                return
            yield bytes(chunk)

    async def delete_prefix(self, prefix: str) -> int:
        """Delete every object under ``prefix`` (bulk DeleteObjects, 1,000 at a time)."""
        check_prefix(prefix)
        paths = await self._paths(prefix)
        if paths:
            await _guarded(obstore.delete_async(self._store, paths))
        return len(paths)

    async def count(self, prefix: str) -> int:
        """Objects under ``prefix``."""
        check_prefix(prefix)
        return len(await self._paths(prefix))

    async def keys(self, prefix: str) -> set[str]:
        """The objects under ``prefix`` (S3 writes an object whole, or not at all)."""
        check_prefix(prefix)
        return set(await self._paths(prefix))

    async def _paths(self, prefix: str) -> list[str]:
        async def collect() -> list[str]:
            return [
                meta["path"]
                async for batch in obstore.list(self._store, prefix, chunk_size=1000)
                for meta in batch
            ]

        return await _guarded(collect())

    async def url(self, key: str, expires_in_s: int) -> str | None:
        """``PAGE_PUBLIC_BASE_URL`` + key, else a presigned GET valid ``expires_in_s``."""
        check_key(key)
        if self._public_base_url:
            return self._public_base_url + key
        return await _guarded(
            obstore.sign_async(self._store, "GET", key, timedelta(seconds=expires_in_s))
        )

    async def aclose(self) -> None:
        """Nothing to release: obstore's connections close with the store object."""
