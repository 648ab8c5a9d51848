"""Page image keys (pure): the layout, and what no key may look like."""

from __future__ import annotations

import pytest

from service.domain.page_keys import (
    InvalidKey,
    chapter_prefix,
    check_prefix,
    content_type_of,
    is_valid_key,
    page_key,
    thumbnail_key,
)

CHAPTER = "968d23a1-5b2e-4c1f-9a57-1f0e5b6c2d3e"


def test_keys_follow_the_original_layout():
    assert page_key(CHAPTER, 1) == f"chapters/{CHAPTER}/page-1.webp"
    assert page_key(CHAPTER, 12, "jpeg") == f"chapters/{CHAPTER}/page-12.jpg"
    assert thumbnail_key(CHAPTER, 3) == f"chapters/{CHAPTER}/thumb-3.webp"
    assert chapter_prefix(CHAPTER) == f"chapters/{CHAPTER}/"


def test_every_key_of_a_chapter_is_under_its_prefix_and_valid():
    keys = [page_key(CHAPTER, 1), thumbnail_key(CHAPTER, 1, "jpeg")]

    assert all(key.startswith(chapter_prefix(CHAPTER)) for key in keys)
    assert all(is_valid_key(key) for key in keys)


@pytest.mark.parametrize("chapter_id", ["", "a/b", "..", "a b", "x" * 200, "-lead"])
def test_a_chapter_id_that_would_escape_its_prefix_is_refused(chapter_id):
    with pytest.raises(InvalidKey):
        page_key(chapter_id, 1)


@pytest.mark.parametrize(("page", "fmt"), [(0, "webp"), (-1, "webp"), (1, "png")])
def test_page_numbers_start_at_one_and_formats_are_known(page, fmt):
    with pytest.raises(InvalidKey):
        page_key(CHAPTER, page, fmt)


@pytest.mark.parametrize(
    "key",
    ["", "/a", "a/", "a//b", "../a", "a/../b", "./a", "a b", "a?b", "a%2Fb", "é", "x" * 513],
)
def test_keys_that_are_not_plain_relative_paths_are_invalid(key):
    assert not is_valid_key(key)


@pytest.mark.parametrize("prefix", ["", "/", "chapters", "chapters/ab", "../", "a//"])
def test_prefixes_must_be_whole_segments(prefix):
    with pytest.raises(InvalidKey):
        check_prefix(prefix)


def test_content_types_follow_the_extension():
    assert content_type_of("chapters/a/page-1.webp") == "image/webp"
    assert content_type_of("chapters/a/page-1.jpg") == "image/jpeg"
    assert content_type_of("chapters/a/page-1") == "application/octet-stream"
