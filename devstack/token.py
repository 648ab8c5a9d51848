"""Development ID tokens, in the Firebase Auth emulator's format (unsigned, ``alg: none``).

They are accepted only in emulator mode (``FIREBASE_AUTH_EMULATOR_HOST`` set), which production
refuses to start with.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any


def _b64(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def emulator_token(user_id: str, project_id: str, *, lifetime_s: int = 3600) -> str:
    """An unsigned ID token for ``user_id``, valid for ``lifetime_s`` seconds."""
    now = int(time.time())
    claims = {
        "iss": f"https://securetoken.google.com/{project_id}",
        "aud": project_id,
        "auth_time": now,
        "user_id": user_id,
        "sub": user_id,
        "iat": now,
        "exp": now + lifetime_s,
        "firebase": {"identities": {}, "sign_in_provider": "custom"},
    }
    return f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."
