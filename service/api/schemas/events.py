"""The event stream's data: a ``page`` event, and the stream token's answer."""

from __future__ import annotations

import msgspec

from service.api.schemas.common import Timestamp


class PageEventOut(msgspec.Struct, kw_only=True):
    """The data of a ``page`` event: one page stored, as the chapter will list it."""

    page_number: int
    total_pages: int
    background_url: str | None
    thumbnail_url: str | None
    width: int | None
    height: int | None
    has_text: bool
    text_source: str = "pdf"
    ocr_confidence: float | None = None


class StreamTokenOut(msgspec.Struct, kw_only=True):
    """A token for ``?token=`` on this job's event stream, for this user, until ``expires_at``."""

    token: str
    expires_at: Timestamp
