"""Firebase ID token authentication.

``Authorization: Bearer <Firebase ID token>`` is verified by firebase-admin itself (signature
against Google's certificates, ``aud``, ``iss``, ``exp``, ``sub``). That call is synchronous and may
fetch certificates over the network, so it runs in a worker thread, never on the event loop. A
browser polls every two seconds with the same token: verified claims are kept in a bounded LRU
cache until the token's ``exp``, so each token is verified once.

Emulator mode (``FIREBASE_AUTH_EMULATOR_HOST``) is for development and tests: firebase-admin then
accepts unsigned tokens and does not check ``exp``, so we check ``exp`` ourselves, and the settings
refuse emulator mode when ``APP_ENV=production``.
"""

from __future__ import annotations

import logging
import os
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any
from uuid import uuid4

import anyio.to_thread
import firebase_admin
import google.auth.credentials
from firebase_admin import auth as firebase_auth
from firebase_admin import credentials

from service.domain.errors import DependencyUnavailable, NotAuthenticated
from service.settings import Settings

log = logging.getLogger("service.auth")

EMULATOR_ENV = "FIREBASE_AUTH_EMULATOR_HOST"


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller."""

    user_id: str


class _VerifyOnlyCredential(credentials.Base):  # type: ignore[misc]
    """Verifying ID tokens needs only the project id, not a service account."""

    def get_credential(self) -> google.auth.credentials.Credentials:
        return google.auth.credentials.AnonymousCredentials()  # type: ignore[no-untyped-call]


class TokenVerifier:
    """Verifies Firebase ID tokens off the event loop and caches the result until ``exp``."""

    def __init__(self, settings: Settings) -> None:
        self.emulated = bool(settings.firebase_auth_emulator_host)
        # firebase-admin reads emulator mode from the process environment on every call; keep
        # that in step with the validated settings so the two can never disagree.
        if settings.firebase_auth_emulator_host:
            os.environ[EMULATOR_ENV] = settings.firebase_auth_emulator_host
        else:
            os.environ.pop(EMULATOR_ENV, None)
        self._app = firebase_admin.initialize_app(
            _VerifyOnlyCredential(),
            options={"projectId": settings.firebase_project_id},
            name=f"pdf-chapter-jobs-{uuid4().hex}",
        )
        self._max_entries = settings.auth_cache_size
        self._cache: OrderedDict[str, tuple[Principal, float]] = OrderedDict()

    def close(self) -> None:
        firebase_admin.delete_app(self._app)

    async def authenticate(self, authorization: str | None) -> Principal:
        """The caller behind an ``Authorization`` header, or ``NotAuthenticated``."""
        token = _bearer_token(authorization)
        cached = self._cache.get(token)
        if cached is not None:
            principal, expires_at = cached
            if expires_at > time.time():
                self._cache.move_to_end(token)
                return principal
            del self._cache[token]
        principal, expires_at = await anyio.to_thread.run_sync(self._verify, token)
        if self._max_entries:
            self._cache[token] = (principal, expires_at)
            if len(self._cache) > self._max_entries:
                self._cache.popitem(last=False)
        return principal

    def _verify(self, token: str) -> tuple[Principal, float]:
        try:
            claims: dict[str, Any] = firebase_auth.verify_id_token(token, app=self._app)
        except firebase_auth.CertificateFetchError as exc:
            log.error("cannot fetch Firebase certificates: %s", exc)
            raise DependencyUnavailable("authentication") from None
        except Exception as exc:  # any malformed token must end as a 401, never a 500
            log.info("rejected token: %s", type(exc).__name__)
            raise NotAuthenticated from None
        expires_at = claims.get("exp")
        if not isinstance(expires_at, int | float) or expires_at <= time.time():
            # firebase-admin checks exp itself except in emulator mode; this covers both.
            raise NotAuthenticated
        return Principal(user_id=str(claims["uid"])), float(expires_at)


def _bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise NotAuthenticated
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > 8192:
        raise NotAuthenticated
    return token
