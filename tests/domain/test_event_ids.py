"""Event ids: a version, and the pages seen, written compactly and read back."""

from __future__ import annotations

import pytest

from service.domain.event_ids import MAX_EXTRAS, Seen, parse_event_id


def test_an_id_without_pages_is_the_version_alone_as_ids_always_were():
    assert Seen(7).event_id() == "7"
    assert parse_event_id("7") == Seen(7)


def test_pages_seen_in_order_are_one_number_and_out_of_order_ones_are_listed():
    seen = Seen(3)
    for page in (1, 2, 3, 5, 6, 9):
        seen.add(page)

    assert seen.event_id() == "3.3+5+6+9"
    assert [page in seen for page in range(1, 11)] == [
        True, True, True, False, True, True, False, False, True, False,
    ]  # fmt: skip
    seen.add(4)
    assert seen.event_id() == "3.6+9"


def test_an_id_reads_back_as_what_it_says():
    seen = Seen(12)
    for page in (1, 2, 4, 7):
        seen.add(page)

    assert parse_event_id(seen.event_id()) == seen


def test_pages_listed_past_the_limit_are_left_out_and_so_sent_again():
    seen = Seen(1)
    for page in range(2, 2 * MAX_EXTRAS + 2, 2):
        seen.add(page)

    back = parse_event_id(seen.event_id())

    assert len(back.extras) == MAX_EXTRAS
    assert sorted(back.extras) == sorted(seen.extras)[:MAX_EXTRAS]


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "x",
        "-1",
        "7.",
        "7.x",
        "7.1+",
        "1" * 19,
        "7.1+2+",
        " 7",
        "7 ",
        "7.1+" + "+".join(["9"] * 40),
    ],
)
def test_anything_else_is_refused(raw):
    with pytest.raises(ValueError, match="not an event id of this stream"):
        parse_event_id(raw)
