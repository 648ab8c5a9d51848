"""Page images for browsers: ``GET /api/v1/page-images/{key}?expires=..&sig=..`` (GridFS).

An ``<img>`` sends no Authorization header, so this route takes none: the URL itself is the
permission, signed by ``page_image_url`` (HMAC-SHA256 with ``PAGE_URL_SECRET``, see
``service.domain.signing``) when a chapter or page list is read. URLs are made on every read and
never stored. With ``PAGE_STORE=s3`` images never pass through the API: their URLs are the
store's (presigned, or ``PAGE_PUBLIC_BASE_URL`` + key), and this route answers 404.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec
from litestar import Controller, Request, Response, get
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, FromQuery
from litestar.response import Stream
from litestar.status_codes import HTTP_304_NOT_MODIFIED

from service.api.dependencies import ServicesDep
from service.api.responses import BAD_REQUEST, error, etag_matches
from service.api.state import Services
from service.domain.errors import DependencyUnavailable, Forbidden, NotFound
from service.domain.page_keys import is_valid_key
from service.domain.signing import expires_at, remaining_s, sign, verify
from service.settings import Settings
from service.store.page_images import PageStoreUnavailable

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
    url = await services.page_store.url(key, settings.page_url_ttl_s)
    if url is not None:
        return url
    expires = expires_at(time.time() if now is None else now, settings.page_url_ttl_s)
    signature = sign(key, expires, settings.page_url_secret.get_secret_value())
    return f"{origin}{PAGE_IMAGES_PATH}/{key}?expires={expires}&sig={signature}"


class ChapterPageOut(msgspec.Struct, kw_only=True):
    """One page as the book editor shows it: its image is the page's background, ``elements``
    are what the editor adds on top (none yet). ``has_text: false`` is an image-only (scanned)
    page. URLs are null for a ``pdf_file`` chapter, which has no page images."""

    page_number: int
    background_url: str | None
    thumbnail_url: str | None
    width: int | None
    height: int | None
    has_text: bool
    elements: list[Any] = msgspec.field(default_factory=list)


class ImageUrls:
    """Makes the image URLs of one response: one origin, one clock, for every page."""

    def __init__(self, request: Request[Any, Any, Any], services: Services) -> None:
        self._services = services
        self._origin = api_origin(services.settings, str(request.base_url))

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
        )


def _check_signature(key: str, expires: str | None, sig: str | None, secret: str) -> int:
    """The URL's expiry (unix seconds) when its signature holds; 403 otherwise."""
    if not expires or not sig:
        raise Forbidden("Image URL is not signed: request it again from the chapter")
    try:
        expiry = int(expires)
    except ValueError:
        raise Forbidden("Image URL signature is invalid") from None
    now = time.time()
    if now >= expiry:
        raise Forbidden("Image URL has expired: request it again from the chapter")
    if not verify(key, expiry, sig, secret, now):
        raise Forbidden("Image URL signature is invalid")
    return expiry


class PageImageController(Controller):
    """Page images served from GridFS to holders of a signed URL; no Authorization."""

    path = PAGE_IMAGES_PATH
    tags = ["page images"]  # noqa: RUF012
    security = []  # noqa: RUF012  (the signed URL is the credential)

    @get(
        "/{key:path}",
        summary="A page image, by signed URL",
        description=(
            "The `background_url` / `thumbnail_url` of a chapter's page. Needs no Authorization: "
            "`expires` and `sig` come with the URL. Send the ETag back in If-None-Match for a 304."
        ),
        opt={"error_prefix": "Failed to read page image"},
        responses={
            200: ResponseSpec(
                bytes,
                generate_examples=False,
                media_type="image/webp",
                description="The image (image/webp, or image/jpeg for a .jpg key)",
            ),
            304: ResponseSpec(
                None, generate_examples=False, description="Unchanged since the ETag sent"
            ),
            **BAD_REQUEST,
            403: error("URL unsigned, tampered with, or expired"),
            404: error("No such image"),
            500: error("Unexpected failure; carries a request id"),
            503: error("Image storage unreachable; retry after Retry-After"),
        },
    )
    async def get_image(
        self,
        request: Request[Any, Any, Any],
        key: FromPath[str],
        services: ServicesDep,
        expires: FromQuery[str | None] = None,
        sig: FromQuery[str | None] = None,
    ) -> Response[Any]:
        key = key.lstrip("/")
        settings = services.settings
        expiry = _check_signature(key, expires, sig, settings.page_url_secret.get_secret_value())
        if services.page_store.backend != "gridfs" or not is_valid_key(key):
            raise NotFound("Page image not found")
        try:
            image = await services.page_store.open(key)
        except PageStoreUnavailable:
            raise DependencyUnavailable("page image storage") from None
        if image is None:
            raise NotFound("Page image not found")
        # Cached no longer than the URL may be used, and privately: the URL is a credential.
        max_age = min(remaining_s(expiry, time.time()), settings.page_url_ttl_s)
        headers = {"ETag": image.etag, "Cache-Control": f"private, max-age={max_age}"}
        if etag_matches(request.headers.get("if-none-match"), image.etag):
            return Response(content=b"", status_code=HTTP_304_NOT_MODIFIED, headers=headers)
        headers["Content-Length"] = str(image.length)
        headers["X-Content-Type-Options"] = "nosniff"
        return Stream(image.chunks, media_type=image.content_type, headers=headers)
