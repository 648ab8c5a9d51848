"""Signed, expiring URLs for the page images the API serves itself (``PAGE_STORE=gridfs``).

A browser loads a page image with a plain ``<img>``, which cannot send an Authorization header,
so the URL carries the permission: ``?expires=<unix seconds>&sig=<HMAC-SHA256>``, signed with
``PAGE_URL_SECRET`` over the image's path and the expiry. Whoever holds the URL may read that one
image until it expires; changing the path, the expiry or the signature voids it.

Pure functions: the caller passes the clock and the secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

# Binds a signature to this use, should the same secret ever sign something else.
_PURPOSE = b"pcj-page-image-v1"


def _mac(path: str, expires_at: int, secret: str) -> bytes:
    message = b"\n".join((_PURPOSE, str(expires_at).encode(), path.encode()))
    return hmac.new(secret.encode(), message, hashlib.sha256).digest()


def sign(path: str, expires_at: int, secret: str) -> str:
    """The signature of ``path`` valid until ``expires_at`` (unix seconds): 43 URL-safe chars."""
    return base64.urlsafe_b64encode(_mac(path, expires_at, secret)).rstrip(b"=").decode()


def verify(path: str, expires: int, signature: str, secret: str, now: float) -> bool:
    """Whether ``signature`` was made by ``sign(path, expires, secret)`` and has not expired.

    The comparison takes the same time wherever the signatures differ.
    """
    if now >= expires:
        return False
    expected = sign(path, expires, secret).encode()
    return hmac.compare_digest(expected, signature.encode("utf-8", "replace"))


def expires_at(now: float, ttl_s: int) -> int:
    """When a URL made at ``now`` should expire: about ``ttl_s`` later, never later than that.

    Rounded down to a twelfth of the TTL, so that every URL made for one image within that
    step is the same URL and a browser's cache can answer it; a URL lives between 11/12 of the
    TTL and the whole TTL.
    """
    step = max(1, ttl_s // 12)
    return int((now + ttl_s) // step * step)


def remaining_s(expires: int, now: float) -> int:
    """Whole seconds a URL expiring at ``expires`` has left (0 once expired)."""
    return max(0, int(expires - now))
