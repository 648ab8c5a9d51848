"""Firebase ID token authentication.

``Authorization: Bearer <Firebase ID token>`` is verified by firebase-admin itself (signature
against Google's certificates, ``aud``, ``iss``, ``exp``, ``sub``). That call is synchronous and may
fetch certificates over the network, so it runs in a worker thread, never on the event loop. A
browser polls every two seconds with the same token: verified claims are kept in a bounded LRU
cache until the token's ``exp``, so each token is verified once.

Production hardening (docs/operations.md, "Authentication"): Google is asked with a short timeout
(``FIREBASE_HTTP_TIMEOUT_S``), one verification at a time and never again for a few seconds after
a failure (``service.auth.breaker``), so a hung certificate endpoint costs a 503 within the timeout
instead of a queue of threads; ``iat`` tolerates ``FIREBASE_CLOCK_SKEW_S`` of clock drift; the
tenant, the sign-in provider (``service.auth.policy``) and optionally the user's standing
(``service.auth.revocation``) are checked too. Each rejection is logged with its reason
(``service.auth.rejection``), never with the token.

Emulator mode (``FIREBASE_AUTH_EMULATOR_HOST``) is for development and tests: firebase-admin then
accepts unsigned tokens and does not check ``exp``, so we check ``exp`` ourselves, and the settings
refuse emulator mode when ``APP_ENV=production``.
"""

from __future__ import annotations

import logging
import os
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any
from uuid import uuid4

import firebase_admin
import google.auth.credentials
import google.auth.exceptions
from firebase_admin import auth as firebase_auth
from firebase_admin import credentials

from service.auth.breaker import Breaker
from service.auth.policy import TokenPolicy
from service.auth.rejection import reason_for
from service.auth.revocation import RECHECK_AFTER_S, check_user
from service.domain.errors import DependencyFailed, NotAuthenticated, TokenRejected
from service.settings import Settings

log = logging.getLogger("service.auth")

EMULATOR_ENV = "FIREBASE_AUTH_EMULATOR_HOST"

# After Google fails to answer, requests needing it get a 503 for this long before the next try.
FAILURE_MEMORY_S = 5.0
# A request waits for Google at most FIREBASE_HTTP_TIMEOUT_S plus this, its turn included.
DEADLINE_MARGIN_S = 0.5
# User lookups (FIREBASE_CHECK_REVOKED) in flight at once per process; the rest wait their turn.
USER_LOOKUPS = 4


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller."""

    user_id: str


class _VerifyOnlyCredential(credentials.Base):  # type: ignore[misc]
    """Verifying ID tokens needs only the project id, not a service account."""

    def get_credential(self) -> google.auth.credentials.Credentials:
        return google.auth.credentials.AnonymousCredentials()  # type: ignore[no-untyped-call]


@dataclass(slots=True)
class _Verified:
    """A cached verification: who, until when, and when their account was last looked up."""

    principal: Principal
    expires_at: float  # the token's exp (wall clock)
    issued_at: float  # the token's iat, for the revocation check
    checked_at: float = float("-inf")  # monotonic; -inf: the account was never looked up


class TokenVerifier:
    """Verifies Firebase ID tokens off the event loop and caches the result until ``exp``."""

    def __init__(
        self,
        settings: Settings,
        *,
        failure_memory_s: float = FAILURE_MEMORY_S,
        recheck_after_s: float = RECHECK_AFTER_S,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        # The wall clock judges tokens' exp; the monotonic one the revocation re-checks. Tests
        # pass their own, so that a token can expire without waiting for it.
        self._clock = clock
        self._monotonic = monotonic
        self.emulated = bool(settings.firebase_auth_emulator_host)
        # firebase-admin reads emulator mode from the process environment on every call; keep
        # that in step with the validated settings so the two can never disagree.
        if settings.firebase_auth_emulator_host:
            os.environ[EMULATOR_ENV] = settings.firebase_auth_emulator_host
        else:
            os.environ.pop(EMULATOR_ENV, None)
        self._app = firebase_admin.initialize_app(
            _credential(settings),
            # httpTimeout bounds the certificate fetch and the user lookups (default 120 s).
            options={
                "projectId": settings.firebase_project_id,
                "httpTimeout": settings.firebase_http_timeout_s,
            },
            name=f"pdf-chapter-jobs-{uuid4().hex}",
        )
        try:
            # Scoped to the tenant: verify_id_token checks the token's tenant, get_user looks
            # the user up in it.
            self._client = firebase_auth.Client(self._app, tenant_id=settings.firebase_tenant_id)
        except google.auth.exceptions.DefaultCredentialsError as exc:
            firebase_admin.delete_app(self._app)
            raise RuntimeError(
                "FIREBASE_CHECK_REVOKED=true looks users up in Firebase Auth, which needs Google "
                "credentials (GOOGLE_APPLICATION_CREDENTIALS or the platform's service account); "
                "none were found"
            ) from exc
        self._clock_skew_s = settings.firebase_clock_skew_s
        self._check_revoked = settings.firebase_check_revoked
        self._recheck_after_s = recheck_after_s
        self._policy = TokenPolicy(
            tenant_id=settings.firebase_tenant_id,
            allowed_providers=settings.firebase_allowed_providers,
        )
        deadline_s = settings.firebase_http_timeout_s + DEADLINE_MARGIN_S
        # One verification at a time: when the certificates are cached it is ~0.4 ms of CPU
        # (thousands a second), and when they are not only one request goes to fetch them while
        # the others wait on the event loop, not each in a thread of its own.
        self._certificates = Breaker(
            "Firebase certificates",
            shown_as="authentication",
            concurrency=1,
            deadline_s=deadline_s,
            failure_memory_s=failure_memory_s,
            clock=monotonic,
        )
        self._users = Breaker(
            "Firebase user lookup",
            shown_as="authentication",
            concurrency=USER_LOOKUPS,
            deadline_s=deadline_s,
            failure_memory_s=failure_memory_s,
            clock=monotonic,
        )
        self._max_entries = settings.auth_cache_size
        self._cache: OrderedDict[str, _Verified] = OrderedDict()

    def close(self) -> None:
        firebase_admin.delete_app(self._app)

    async def authenticate(self, authorization: str | None) -> Principal:
        """The caller behind an ``Authorization`` header, or ``NotAuthenticated``.

        ``DependencyUnavailable`` (503, Retry-After) when Google cannot be asked in time.
        """
        try:
            return await self._authenticate(_bearer_token(authorization))
        except TokenRejected as rejected:
            extra = {"reason": rejected.reason}
            if rejected.user_id is not None:
                extra["user_id"] = rejected.user_id
            log.info("token rejected: %s", rejected.reason, extra=extra)
            raise NotAuthenticated from None

    async def _authenticate(self, token: str) -> Principal:
        cached = self._cache.get(token)
        if cached is not None:
            if cached.expires_at > self._clock():
                self._cache.move_to_end(token)
                await self._recheck_user(token, cached)
                return cached.principal
            del self._cache[token]
        claims = await self._certificates.call(partial(self._verify, token))
        self._policy.check(claims)
        verified = _Verified(
            Principal(user_id=str(claims["uid"])),
            expires_at=float(claims["exp"]),
            issued_at=float(claims["iat"]),
        )
        await self._recheck_user(token, verified)
        if self._max_entries:
            self._cache[token] = verified
            if len(self._cache) > self._max_entries:
                self._cache.popitem(last=False)
        return verified.principal

    async def _recheck_user(self, token: str, verified: _Verified) -> None:
        """With FIREBASE_CHECK_REVOKED, look the user up unless done in the last minute."""
        if not self._check_revoked:
            return
        if self._monotonic() - verified.checked_at < self._recheck_after_s:
            return
        user_id = verified.principal.user_id
        try:
            await self._users.call(partial(check_user, self._client, user_id, verified.issued_at))
        except TokenRejected:
            self._cache.pop(token, None)
            raise
        verified.checked_at = self._monotonic()

    def _verify(self, token: str) -> dict[str, Any]:
        """firebase-admin's verification (blocking: may fetch the certificates)."""
        try:
            claims: dict[str, Any] = self._client.verify_id_token(
                token, clock_skew_seconds=self._clock_skew_s
            )
        except firebase_auth.CertificateFetchError as exc:
            raise DependencyFailed(f"certificate fetch failed: {exc}") from None
        except Exception as exc:  # any malformed token must end as a 401, never a 500
            raise TokenRejected(reason_for(exc)) from None
        user_id = str(claims["uid"])
        expires_at = claims.get("exp")
        if not isinstance(expires_at, int | float) or expires_at <= self._clock():
            # firebase-admin checks exp itself except in emulator mode, and allows the clock
            # skew past it. Ours is strict: the skew is there for a fresh token's iat when our
            # clock lags; a token at its exp has been replaced by the Firebase SDK minutes ago.
            raise TokenRejected("expired", user_id=user_id)
        if not isinstance(claims.get("iat"), int | float):
            raise TokenRejected("missing claim", user_id=user_id)
        return claims


def _credential(settings: Settings) -> credentials.Base:
    if settings.firebase_check_revoked and not settings.firebase_auth_emulator_host:
        # Looking users up is an authenticated Google API call (the emulator takes any caller).
        return credentials.ApplicationDefault()
    return _VerifyOnlyCredential()


def _bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise TokenRejected("no token")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > 8192:
        raise TokenRejected("not a bearer token")
    return token
