"""Whether the user behind a verified token still exists, is enabled and has not been signed out.

A Firebase ID token stays valid until its ``exp`` (up to an hour) whatever happens to its user:
deleting or disabling the account, or revoking its sessions (``revoke_refresh_tokens``), stops
new tokens only. With ``FIREBASE_CHECK_REVOKED`` on we ask Firebase about the user, the same
check as ``verify_id_token(check_revoked=True)``, and keep the answer per token for
``RECHECK_AFTER_S``: a browser polling every two seconds then costs one lookup a minute, and a
disabled, deleted or revoked user loses access within a minute, not an hour.

The lookup (``get_user``) is an authenticated call to the Identity Toolkit API, so production
needs Google credentials with read access to Firebase Auth users (Application Default
Credentials: ``GOOGLE_APPLICATION_CREDENTIALS`` or the platform's service account).
"""

from __future__ import annotations

from typing import Any

from firebase_admin import auth as firebase_auth

from service.domain.errors import DependencyFailed, TokenRejected

# How long the answer for one token is trusted before the user is looked up again.
RECHECK_AFTER_S = 60.0


def check_user(client: Any, user_id: str, issued_at: float) -> None:
    """Raise ``TokenRejected`` if ``user_id`` is deleted, disabled, or was signed out after
    ``issued_at`` (the token's ``iat``); ``DependencyFailed`` if Firebase cannot say.

    Blocking (one HTTP call through ``client``, a ``firebase_admin.auth.Client``).
    """
    try:
        user = client.get_user(user_id)
    except firebase_auth.UserNotFoundError:
        raise TokenRejected("user deleted", user_id=user_id) from None
    except Exception as exc:  # no answer (network, timeout, credentials, 5xx): not a verdict
        raise DependencyFailed(f"user lookup failed: {type(exc).__name__}") from exc
    if user.disabled:
        raise TokenRejected("user disabled", user_id=user_id)
    # tokens_valid_after_timestamp is in milliseconds, iat in seconds (firebase-admin compares
    # them the same way).
    if issued_at * 1000 < user.tokens_valid_after_timestamp:
        raise TokenRejected("revoked", user_id=user_id)
