"""Where a chapter's page images live: one key per image, the same in GridFS and in S3.

    chapters/{chapter_id}/page-{n}.webp     the page at CHAPTER_DPI (``.jpg`` for jpeg)
    chapters/{chapter_id}/thumb-{n}.webp    its thumbnail
    chapters/{chapter_id}/source.pdf        the PDF itself (content mode ``pdf_file``)
    chapters/{chapter_id}/text-{n}          not an image: the page's text, as the quota counts
                                            it (``service/store/usage.py``), kept in MongoDB

Keys are relative, ``/``-separated, and made of URL-safe characters only, so a key is at once a
GridFS ``_id``, an S3 object name and the tail of an image URL, with no escaping anywhere.
Everything of one chapter shares the prefix ``chapters/{chapter_id}/``: deleting the chapter
deletes that prefix.
"""

from __future__ import annotations

import re
from typing import Literal

from service.domain.errors import InvalidKey

ImageFormat = Literal["webp", "jpeg"]
ImageKind = Literal["page", "thumb"]

EXTENSIONS: dict[str, str] = {"webp": "webp", "jpeg": "jpg"}
CONTENT_TYPES: dict[str, str] = {
    "webp": "image/webp",
    "jpg": "image/jpeg",
    "pdf": "application/pdf",
}

MAX_KEY_LENGTH = 512
# One path segment: URL-safe and starting with a letter or digit (so never "." or "..").
_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_CHAPTER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")


def chapter_prefix(chapter_id: str) -> str:
    """The prefix shared by every image of one chapter (ends with ``/``)."""
    if not _CHAPTER_ID.fullmatch(chapter_id):
        raise InvalidKey(f"Invalid chapter id {chapter_id[:64]!r}")
    return f"chapters/{chapter_id}/"


def image_key(
    chapter_id: str, page_number: int, image_format: ImageFormat = "webp", kind: ImageKind = "page"
) -> str:
    """The key of page ``page_number`` (1-based) of a chapter, or of its thumbnail."""
    if page_number < 1:
        raise InvalidKey(f"Page numbers start at 1, got {page_number}")
    if image_format not in EXTENSIONS:
        raise InvalidKey(f"Unknown image format {image_format!r}")
    return f"{chapter_prefix(chapter_id)}{kind}-{page_number}.{EXTENSIONS[image_format]}"


def page_key(chapter_id: str, page_number: int, image_format: ImageFormat = "webp") -> str:
    """``chapters/{chapter_id}/page-{n}.webp`` (``.jpg`` for jpeg)."""
    return image_key(chapter_id, page_number, image_format, "page")


def thumbnail_key(chapter_id: str, page_number: int, image_format: ImageFormat = "webp") -> str:
    """``chapters/{chapter_id}/thumb-{n}.webp`` (``.jpg`` for jpeg)."""
    return image_key(chapter_id, page_number, image_format, "thumb")


def source_key(chapter_id: str) -> str:
    """``chapters/{chapter_id}/source.pdf``: the PDF itself, for a ``pdf_file`` chapter."""
    return f"{chapter_prefix(chapter_id)}source.pdf"


def text_key(chapter_id: str, page_number: int) -> str:
    """``chapters/{chapter_id}/text-{n}``: the key page ``n``'s text is counted under."""
    if page_number < 1:
        raise InvalidKey(f"Page numbers start at 1, got {page_number}")
    return f"{chapter_prefix(chapter_id)}text-{page_number}"


def passages_key(chapter_id: str) -> str:
    """``chapters/{chapter_id}/passages``: the key a chapter's search passages (their text, term
    vectors and embeddings in ``document_chunks``) are counted under, all of them as one."""
    return f"{chapter_prefix(chapter_id)}passages"


def is_valid_key(key: str) -> bool:
    """Whether ``key`` is a relative path of URL-safe segments (what every image key is)."""
    if not key or len(key) > MAX_KEY_LENGTH:
        return False
    return all(_SEGMENT.fullmatch(part) for part in key.split("/"))


def check_key(key: str) -> str:
    """``key`` itself, or ``InvalidKey`` when no image can have it."""
    if not is_valid_key(key):
        raise InvalidKey(f"Invalid image key {key[:64]!r}")
    return key


def check_prefix(prefix: str) -> str:
    """A prefix for listing or deleting: one or more whole segments, ending with ``/``.

    Whole segments only, because S3 stores list by path segment: ``chapters/ab`` must not be
    able to mean ``chapters/abc/...`` on one backend and nothing on the other.
    """
    if not prefix.endswith("/") or not is_valid_key(prefix[:-1]):
        raise InvalidKey(f"Invalid prefix {prefix[:64]!r}: whole segments ending with '/'")
    return prefix


def content_type_of(key: str) -> str:
    """The MIME type an image key implies by its extension."""
    return CONTENT_TYPES.get(key.rsplit(".", 1)[-1], "application/octet-stream")
