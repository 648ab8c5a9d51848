"""Page image URLs, made when a chapter or a page list is read, never stored.

GridFS: this API's own route, signed (``service/domain/signing.py``, ``PAGE_URL_TTL_S``). S3:
the store's presigned URL, or ``PAGE_PUBLIC_BASE_URL`` + key.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from litestar import Request

from service.api.schemas.chapters import ChapterPageOut
from service.api.schemas.common import iso_z
from service.api.services import Services
from service.domain.signing import expires_at, sign
from service.settings import Settings

PAGE_IMAGES_PATH = "/api/v1/page-images"


def api_origin(settings: Settings, request_base_url: str) -> str:
    """Where browsers reach this API: ``API_PUBLIC_URL``, else the request's own base URL.

    Call it once per request: ``api_origin(services.settings, str(request.base_url))``.
    """
    return settings.api_public_url or request_base_url.rstrip("/")


async def page_image_url(
    services: Services, key: str, *, origin: str, now: float | None = None
) -> str:
    """A URL a browser can load ``key`` from, with no credentials, for ``PAGE_URL_TTL_S``.

    GridFS: this API's own route, signed. S3: the store's presigned or public URL.
    """
    settings = services.settings
    url = await services.store.images.url(key, settings.page_url_ttl_s)
    if url is not None:
        return url
    expires = expires_at(time.time() if now is None else now, settings.page_url_ttl_s)
    signature = sign(key, expires, settings.page_url_secret.get_secret_value())
    return f"{origin}{PAGE_IMAGES_PATH}/{key}?expires={expires}&sig={signature}"


class ImageUrls:
    """Makes the image URLs of one response: one origin, one clock, for every page."""

    def __init__(self, request: Request[Any, Any, Any], services: Services) -> None:
        self._services = services
        self._origin = api_origin(services.settings, str(request.base_url))
        self._made_at = time.time()

    def expire_at(self) -> str | None:
        """When the URLs of this response stop working, at the earliest (``...Z``), or None for
        unsigned public URLs. A signed URL made later expires no sooner, and a presigned S3 URL
        lives the whole TTL, longer than a signed one's rounded expiry."""
        settings = self._services.settings
        if settings.page_store == "s3" and settings.page_public_base_url:
            return None
        expires = expires_at(self._made_at, settings.page_url_ttl_s)
        return iso_z(datetime.fromtimestamp(expires, UTC))

    async def of(self, ref: dict[str, Any] | None) -> str | None:
        if not ref:
            return None
        return await page_image_url(self._services, ref["key"], origin=self._origin)

    async def page(self, entry: dict[str, Any]) -> ChapterPageOut:
        """A page entry (``service.store.chapters.page_entry``) with its URLs."""
        image = entry.get("image") or {}
        return ChapterPageOut(
            page_number=entry["page_number"],
            background_url=await self.of(entry.get("image")),
            thumbnail_url=await self.of(entry.get("thumbnail")),
            width=image.get("width"),
            height=image.get("height"),
            has_text=bool(entry.get("has_text", True)),
            text_source=entry.get("text_source") or "pdf",
            ocr_confidence=entry.get("ocr_confidence"),
        )
