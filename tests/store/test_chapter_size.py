"""A chapter document lists every page and keeps the PDF's outline: at the largest MAX_PAGES and
the longest outline kept it still fits in one MongoDB document (16 MB), so a job that rendered
every page cannot fail on inserting its chapter."""

from __future__ import annotations

import bson
import pytest
from pydantic import ValidationError

from service.domain.page_keys import page_key, thumbnail_key
from service.settings import Settings
from service.store.chapters import page_entry
from worker.rendering.page import MAX_OUTLINE_ENTRIES, MAX_OUTLINE_TITLE

MONGODB_MAX_DOCUMENT = 16 * 1024 * 1024
CHAPTER_ID = "3939f17c-a8ea-4000-be89-9e7e6f5ca4e9"


def _page(index: int) -> dict[str, object]:
    number = index + 1
    return {
        "page_index": index,
        "image": {"key": page_key(CHAPTER_ID, number), "width": 12_000, "height": 12_000},
        "thumbnail": {"key": thumbnail_key(CHAPTER_ID, number), "width": 240, "height": 240},
        "has_text": True,
        "text_source": "ocr",
        "ocr_confidence": 96.53,
    }


def test_a_chapter_of_the_most_pages_allowed_fits_in_one_document():
    most = Settings.model_fields["max_pages"].metadata
    limit = next(m.le for m in most if getattr(m, "le", None) is not None)
    pages = [page_entry(_page(index)) for index in range(limit)]
    outline = [[3, "o" * MAX_OUTLINE_TITLE, n] for n in range(MAX_OUTLINE_ENTRIES)]
    chapter = {
        "title": "t" * 1000, "source_filename": "f" * 255, "pages": pages, "outline": outline,
    }  # fmt: skip

    assert len(bson.encode(chapter)) < MONGODB_MAX_DOCUMENT * 0.9


def test_max_pages_above_what_a_chapter_can_list_is_refused():
    with pytest.raises(ValidationError, match="max_pages"):
        Settings(max_pages=100_000)
