"""The chapter a job makes: how it is shown (content mode), where it sits in its book (slug,
order, parent) and what it is called. Pure."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Container
from dataclasses import dataclass
from enum import StrEnum

from service.domain.name import clean_title

SLUG_MAX = 96
SLUG_PATTERN = r"^[a-z0-9]+(?:-[a-z0-9]+)*$"
_NOT_SLUG = re.compile(r"[^a-z0-9]+")


class ContentMode(StrEnum):
    """``pdf_pages``: every page rendered to an image (the book editor's page backgrounds), text
    kept for search. ``pdf_file``: the PDF itself is the chapter (``pdf_url``); text still
    extracted for search, no images rendered."""

    pdf_pages = "pdf_pages"
    pdf_file = "pdf_file"


@dataclass(frozen=True, slots=True)
class ChapterOptions:
    """What the client asked for the chapter, beyond its book and file (all optional)."""

    title: str | None = None
    slug: str | None = None
    order_index: int | None = None
    parent_id: str | None = None
    is_published: bool = False
    is_preview_free: bool = False
    content_mode: ContentMode = ContentMode.pdf_pages


def chapter_title(requested: str | None, pdf_title: str | None, filename: str) -> str:
    """The title asked for, else the PDF's own, else its file name without the extension; each
    cleaned as a file name is (``clean_title``: no control, bidi or zero-width character), the
    PDF's metadata being as untrusted as anything a client sends."""
    for title in (requested, pdf_title):
        if cleaned := clean_title(title):
            return cleaned
    stem = filename.rsplit(".", 1)[0] if filename.lower().endswith(".pdf") else filename
    return stem or "Untitled chapter"


def slugify(title: str) -> str:
    """``Chapter 1: Harbours & Tides`` -> ``chapter-1-harbours-tides``; never empty."""
    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    slug = _NOT_SLUG.sub("-", ascii_title.lower()).strip("-")[:SLUG_MAX].rstrip("-")
    return slug or "chapter"


def unique_slug(base: str, taken: Container[str]) -> str:
    """``base``, or ``base-2``, ``base-3``... : the first not ``taken`` in the book."""
    if base not in taken:
        return base
    number = 2
    while True:
        suffix = f"-{number}"
        candidate = base[: SLUG_MAX - len(suffix)].rstrip("-") + suffix
        if candidate not in taken:
            return candidate
        number += 1
