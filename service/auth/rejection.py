"""Why an ID token was refused, in a few fixed words an operator can count and alert on.

The client always gets the same 401 ``{"detail": "Could not validate credentials"}``: telling an
attacker which check failed helps only the attacker. Our log gets the reason. Never the token,
nor firebase-admin's message: some of those quote the token (google-auth's "Wrong number of
segments in token: b'...'"), others quote claims the caller chose.
"""

from __future__ import annotations

from firebase_admin import auth as firebase_auth
from firebase_admin import tenant_mgt

from service.domain.errors import TokenRejected

__all__ = ["TokenRejected", "reason_for"]


# firebase-admin raises one InvalidIdTokenError for many causes; its message (or google-auth's,
# which it wraps) tells them apart. Matched in order; anything unknown is "invalid token".
_MESSAGE_REASONS: tuple[tuple[str, str], ...] = (
    ("but was given a custom token", "custom token"),
    ("but was given a legacy custom token", "custom token"),
    ('has no "kid" claim', "no key id"),
    ("has incorrect algorithm", "wrong algorithm"),
    ('incorrect "aud"', "wrong audience"),
    ('incorrect "iss"', "wrong issuer"),
    ('"sub" (subject)', "bad subject"),
    ("Could not verify token signature", "bad signature"),
    ("Certificate for key id", "unknown key id"),
    ("Token used too early", "issued in the future"),
    ("Token expired", "expired"),
    ("does not contain required claim", "missing claim"),
    ("Wrong number of segments", "malformed"),
    ("segment should be a JSON object", "malformed"),
    ("Can't parse segment", "malformed"),
    ("base64", "malformed"),
    ("padding", "malformed"),
)


def reason_for(error: Exception) -> str:
    """The reason a firebase-admin verification error stands for."""
    if isinstance(error, firebase_auth.ExpiredIdTokenError):
        return "expired"
    if isinstance(error, firebase_auth.RevokedIdTokenError):
        return "revoked"
    if isinstance(error, firebase_auth.UserDisabledError):
        return "user disabled"
    if isinstance(error, firebase_auth.UserNotFoundError):
        return "user deleted"
    if isinstance(error, tenant_mgt.TenantIdMismatchError):
        return "tenant"
    message = str(error)
    for fragment, reason in _MESSAGE_REASONS:
        if fragment in message:
            return reason
    if isinstance(error, firebase_auth.InvalidIdTokenError):
        return "invalid token"
    return f"invalid token ({type(error).__name__})"
