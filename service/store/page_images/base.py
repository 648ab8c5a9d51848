"""The page store's interface, which both backends offer (``PAGE_STORE=gridfs`` | ``s3``).

    put(key, data, type, owner)       store one image; a second put of a key replaces it whole
    put_file(key, path, type, owner)  the same for a large object, streamed from a file in
                                      chunks (GridFS) or parts (S3), never held whole
    open(key)                         the image as a stream with its length, type and ETag
    delete_prefix(prefix)             remove every image under a prefix (a chapter), all of it
    count(prefix)                     how many images (or their leftovers) a prefix holds
    keys(prefix)                      the keys of the whole images under a prefix
    url(key, expires_in_s)            a URL a browser can load with no credentials, or None
                                      when the API must sign its own (GridFS)

``owner`` (a user id) is recorded on the object. What each user stores is counted in MongoDB,
by the metered store (``metered.py``) the service uses, not by listing objects.

Keys come from ``service.domain.page_keys``. Errors (``service.domain.errors``):
``PageStoreUnavailable`` when the backend
is unreachable or timed out (retry later; the API answers 503), ``PageStoreError`` for anything
else the backend refused (credentials, a missing bucket); both carry the driver's exception as
``__cause__``. A missing image is not an error: ``open`` returns None.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from pathlib import Path

    from pydantic import SecretStr

Backend = Literal["gridfs", "s3"]


@dataclass(frozen=True, slots=True)
class PageImage:
    """One stored image, opened: metadata now, bytes when ``chunks`` is iterated (once)."""

    key: str
    length: int
    content_type: str
    etag: str  # strong, quoted: changes whenever the bytes do
    chunks: AsyncIterator[bytes]

    async def read(self) -> bytes:
        """Every byte of the image (for tests and small consumers; the API streams)."""
        return b"".join([chunk async for chunk in self.chunks])


class PageStore(Protocol):
    """What both backends offer; see the module docstring."""

    backend: Backend

    async def put(self, key: str, data: bytes, content_type: str, owner: str | None = None) -> None:
        """Store ``data`` (one whole image) at ``key``, replacing what was there; ``owner``
        (a user id) is recorded on the object."""
        ...

    async def put_file(
        self, key: str, path: Path, content_type: str, owner: str | None = None
    ) -> None:
        """Store the file at ``path`` at ``key``, streamed, replacing what was there."""
        ...

    async def open(self, key: str) -> PageImage | None:
        """The image at ``key``, or None when there is none."""
        ...

    async def delete_prefix(self, prefix: str) -> int:
        """Delete every image under ``prefix`` (``chapters/{id}/``); return how many."""
        ...

    async def count(self, prefix: str) -> int:
        """How many images are stored under ``prefix``, partial leftovers included."""
        ...

    async def keys(self, prefix: str) -> set[str]:
        """The keys of the images stored whole under ``prefix`` (a resumed run keeps a page only
        when every image its chunk names is among them)."""
        ...

    async def url(self, key: str, expires_in_s: int) -> str | None:
        """A credential-free URL for ``key``, valid ``expires_in_s``; None: sign your own."""
        ...

    async def aclose(self) -> None:
        """Release what the store holds (it does not own the MongoDB client)."""
        ...


class PageStoreConfig(Protocol):
    """The settings a page store reads (``service.settings.Settings`` has them all)."""

    @property
    def page_store(self) -> Backend: ...
    @property
    def s3_endpoint_url(self) -> str | None: ...
    @property
    def s3_bucket(self) -> str | None: ...
    @property
    def s3_region(self) -> str: ...
    @property
    def s3_access_key_id(self) -> str | None: ...
    @property
    def s3_secret_access_key(self) -> SecretStr | None: ...
    @property
    def page_public_base_url(self) -> str | None: ...
