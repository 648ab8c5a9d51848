"""Stream tokens: ``?token=`` for ``EventSource``, which cannot send an Authorization header.

A browser first asks ``POST /api/v1/books/jobs/{job_id}/stream-token`` with its Firebase ID token,
then opens ``/api/v1/books/jobs/{job_id}/events?token=...``. A stream token lets one user read one
job's events until it expires (``STREAM_TOKEN_TTL_S``, at most 10 minutes), and nothing else: it
is not an ID token, and no other endpoint accepts it.

It is ``v1.<payload>.<signature>``: the payload is base64url JSON ``{"j": job_id, "u": user_id,
"e": expiry (Unix seconds)}`` and the signature is HMAC-SHA256 over ``v1.<payload>`` with
``STREAM_TOKEN_SECRET``. Nothing is stored, so any API process with the same secret accepts it.
It travels in a URL: nginx keeps query strings out of its logs (nginx/nginx.conf.template) and
the app logs paths only.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime

from service.auth.tokens import Principal
from service.domain.errors import AccessDenied, StreamTokenRejected
from service.settings import Settings

log = logging.getLogger("service.stream_token")

VERSION = "v1"
MAX_TOKEN_LENGTH = 2048  # a job id, a user id and a signature: far less


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class StreamTokens:
    """Mints and checks stream tokens with one secret."""

    def __init__(self, secret: bytes, ttl_s: int, clock: Callable[[], float] = time.time) -> None:
        if not secret:
            raise ValueError("a stream token secret must not be empty")
        self._secret = secret
        self._ttl_s = ttl_s
        self._clock = clock

    @classmethod
    def from_settings(cls, settings: Settings) -> StreamTokens:
        """With ``STREAM_TOKEN_SECRET``, or (development only) a random key for this process."""
        if settings.stream_token_secret is not None:
            secret = settings.stream_token_secret.get_secret_value().encode()
        else:
            # Production refuses to start without a secret (service/settings.py); here tokens
            # minted by one process are refused by another, which `make run` never has.
            log.warning("STREAM_TOKEN_SECRET unset: stream tokens are valid on this process only")
            secret = secrets.token_bytes(32)
        return cls(secret, settings.stream_token_ttl_s)

    def _sign(self, signed: str) -> str:
        return _b64(hmac.new(self._secret, signed.encode(), hashlib.sha256).digest())

    def mint(self, job_id: str, user_id: str) -> tuple[str, datetime]:
        """A token for ``user_id`` to read ``job_id``'s stream, and when it expires."""
        expires = int(self._clock()) + self._ttl_s
        payload = _b64(json.dumps({"j": job_id, "u": user_id, "e": expires}).encode())
        signed = f"{VERSION}.{payload}"
        return f"{signed}.{self._sign(signed)}", datetime.fromtimestamp(expires, UTC)

    def verify(self, token: str, job_id: str) -> Principal:
        """The user a valid token was minted for; ``StreamTokenRejected`` (401) when it is
        malformed, forged or expired, ``AccessDenied`` (403) when it is for another job."""
        parts = token.split(".") if len(token) <= MAX_TOKEN_LENGTH else []
        if len(parts) != 3 or parts[0] != VERSION:
            raise StreamTokenRejected
        signed = f"{parts[0]}.{parts[1]}"
        if not hmac.compare_digest(self._sign(signed), parts[2]):
            raise StreamTokenRejected
        try:
            claims = json.loads(_unb64(parts[1]))
            token_job, user_id, expires = str(claims["j"]), str(claims["u"]), int(claims["e"])
        except (ValueError, KeyError, TypeError, binascii.Error):
            raise StreamTokenRejected from None  # signed by us, so never in practice
        if expires <= self._clock():
            raise StreamTokenRejected
        if token_job != job_id:
            raise AccessDenied
        return Principal(user_id=user_id)
