"""Page images for browsers: ``GET /api/v1/page-images/{key}?expires=..&sig=..`` (GridFS).

An ``<img>`` sends no Authorization header, so this route takes none: the URL itself is the
permission, signed (HMAC-SHA256 with ``PAGE_URL_SECRET``, see ``service.domain.signing``) when a
chapter or page list is read (``service/api/http/image_urls.py``). With ``PAGE_STORE=s3`` images
never pass through the API: their URLs are the store's (presigned, or ``PAGE_PUBLIC_BASE_URL`` +
key), and this route answers 404.
"""

from __future__ import annotations

import re
import time
from typing import Any

from litestar import Controller, Request, Response, get
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, FromQuery
from litestar.response import Stream
from litestar.status_codes import HTTP_304_NOT_MODIFIED

from service.api.http.dependencies import ServicesDep
from service.api.http.etag import etag_matches
from service.api.http.image_urls import PAGE_IMAGES_PATH
from service.api.schemas.common import BAD_REQUEST, error
from service.domain.errors import (
    DependencyUnavailable,
    Forbidden,
    NotFound,
    PageStoreUnavailable,
)
from service.domain.page_keys import is_valid_key
from service.domain.signing import remaining_s, verify

# Unix seconds as ``str(int)`` writes them (up to the year 33658).
_CANONICAL_EXPIRY = re.compile(r"[1-9][0-9]{0,11}")


def _check_signature(key: str, expires: str | None, sig: str | None, secret: str) -> int:
    """The URL's expiry (unix seconds) when its signature holds; 403 otherwise.

    The expiry must be spelled as it was signed: ASCII digits, no sign, no leading zero, no
    ``_`` or space (all of which ``int()`` takes). One image then has one URL per expiry, and
    a cache in front (the browser's, a CDN's) cannot be missed or filled by respellings.
    """
    if not expires or not sig:
        raise Forbidden("Image URL is not signed: request it again from the chapter")
    if not _CANONICAL_EXPIRY.fullmatch(expires):
        raise Forbidden("Image URL signature is invalid")
    expiry = int(expires)
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
        if services.store.images.backend != "gridfs" or not is_valid_key(key):
            raise NotFound("Page image not found")
        try:
            image = await services.store.images.open(key)
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
