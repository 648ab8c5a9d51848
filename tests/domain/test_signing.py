"""Signed image URLs (pure): what verifies, and every way a URL can be made not to."""

from __future__ import annotations

import pytest

from service.domain.signing import expires_at, remaining_s, sign, verify

SECRET = "s" * 32
KEY = "chapters/3f1c/page-1.webp"
NOW = 1_800_000_000.0
EXPIRES = int(NOW) + 3600


def test_a_signature_verifies_until_it_expires():
    signature = sign(KEY, EXPIRES, SECRET)

    assert verify(KEY, EXPIRES, signature, SECRET, now=NOW)
    assert verify(KEY, EXPIRES, signature, SECRET, now=EXPIRES - 0.001)
    assert not verify(KEY, EXPIRES, signature, SECRET, now=EXPIRES)
    assert not verify(KEY, EXPIRES, signature, SECRET, now=EXPIRES + 1)


def test_a_signature_is_url_safe_and_fixed_length():
    signature = sign(KEY, EXPIRES, SECRET)

    assert len(signature) == 43
    assert signature.replace("-", "").replace("_", "").isalnum()


@pytest.mark.parametrize(
    ("path", "expires", "secret"),
    [
        ("chapters/3f1c/page-2.webp", EXPIRES, SECRET),  # another image
        ("chapters/3f1c/page-1.webp/", EXPIRES, SECRET),
        (KEY, EXPIRES + 1, SECRET),  # a longer life
        (KEY, EXPIRES - 1, SECRET),
        (KEY, EXPIRES, "t" * 32),  # another secret
    ],
    ids=["other-key", "trailing-slash", "later-expiry", "earlier-expiry", "other-secret"],
)
def test_a_signature_does_not_carry_over(path, expires, secret):
    signature = sign(KEY, EXPIRES, SECRET)

    assert not verify(path, expires, signature, secret, now=NOW)


@pytest.mark.parametrize(
    "signature",
    ["", "x", "A" * 43, "é" * 43, "\x00" * 43],
    ids=["empty", "short", "forged", "non-ascii", "nul"],
)
def test_a_forged_signature_is_rejected(signature):
    assert not verify(KEY, EXPIRES, signature, SECRET, now=NOW)


def test_a_signature_with_one_character_changed_is_rejected():
    signature = sign(KEY, EXPIRES, SECRET)
    for index in range(len(signature)):
        changed = "A" if signature[index] != "A" else "B"
        tampered = signature[:index] + changed + signature[index + 1 :]

        assert not verify(KEY, EXPIRES, tampered, SECRET, now=NOW), index


@pytest.mark.parametrize("ttl", [60, 61, 3600, 86_400, 604_800])
def test_expiry_is_at_most_the_ttl_away_and_at_least_eleven_twelfths(ttl):
    for offset in range(0, 400, 7):
        now = NOW + offset

        assert ttl * 11 / 12 - 1 < expires_at(now, ttl) - now <= ttl


@pytest.mark.parametrize("ttl", [60, 3600, 604_800])
def test_urls_made_within_one_step_share_their_expiry(ttl):
    step = ttl // 12
    start = (int(NOW) // step) * step - ttl  # a step boundary

    assert expires_at(start, ttl) == expires_at(start + step - 0.5, ttl) == start + ttl
    assert expires_at(start + step, ttl) == start + ttl + step


def test_remaining_life_counts_down_to_zero():
    assert remaining_s(EXPIRES, NOW) == 3600
    assert remaining_s(EXPIRES, EXPIRES + 10) == 0
