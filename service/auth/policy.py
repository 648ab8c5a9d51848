"""Which verified Firebase users this service accepts: one tenant (or none), some sign-in providers.

firebase-admin proves a token was issued by our Firebase project; it does not say the project's
every user is welcome here. A project with Identity Platform tenants issues tokens to every
tenant, and a uid is unique only within its tenant: accepting all of them would let a user of
tenant B act as the user with the same uid in tenant A. A project with anonymous sign-in enabled
(for another app of the project, say) hands a token to anyone who asks.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from service.domain.errors import TokenRejected


class TokenPolicy:
    """Checks the claims of a verified token against the configured tenant and providers."""

    def __init__(self, *, tenant_id: str | None, allowed_providers: Collection[str]) -> None:
        self.tenant_id = tenant_id
        self.allowed_providers = frozenset(allowed_providers)  # empty: every provider

    def check(self, claims: Mapping[str, Any]) -> None:
        """Raise ``TokenRejected`` unless the token's tenant and sign-in provider are accepted.

        Without ``FIREBASE_TENANT_ID`` only tokens of no tenant (the project's own users) pass.
        """
        firebase = claims.get("firebase")
        if not isinstance(firebase, Mapping):
            firebase = {}
        user_id = str(claims.get("uid") or claims.get("sub") or "") or None
        if firebase.get("tenant") != self.tenant_id:
            raise TokenRejected("tenant", user_id=user_id)
        provider = firebase.get("sign_in_provider")
        if self.allowed_providers and provider not in self.allowed_providers:
            raise TokenRejected("provider", user_id=user_id)
