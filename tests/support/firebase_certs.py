"""A stand-in for Google's certificate endpoint: the one boundary the tests cannot reach.

It serves ``{kid: x509 PEM}`` like Google does; tokens are RS256-signed with keys generated here.
firebase-admin's real verification code checks them.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID


class SigningKey:
    def __init__(self, kid: str) -> None:
        self.kid = kid
        self.private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "securetoken.test")])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.private_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .sign(self.private_key, hashes.SHA256())
        )
        self.cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()

    def sign(self, claims: dict[str, Any], kid: str | None = None) -> str:
        return jwt.encode(
            claims, self.private_key, algorithm="RS256", headers={"kid": kid or self.kid}
        )


class CertServer:
    """Serves the published keys on 127.0.0.1 and counts how often they are fetched (``fetches``).

    ``hanging``: accept each connection, read the request and never answer it, as a stuck
    upstream or a black-holing proxy would. Requests made after ``hanging`` is cleared are served.
    ``max_age_s``: how long firebase-admin may cache the keys (0: it fetches for every token).
    """

    def __init__(self, project_id: str, *, hanging: bool = False, max_age_s: int = 3600) -> None:
        self.project_id = project_id
        self.key = SigningKey("test-kid-1")
        self.fetches = 0
        self._count_lock = threading.Lock()
        self._release = threading.Event()  # set: hung requests end (without an answer)
        self.hanging = hanging
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with server._count_lock:
                    server.fetches += 1
                if server.hanging:
                    server._release.wait(timeout=120)
                    return
                body = json.dumps({server.key.kid: server.key.cert_pem}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Cache-Control", f"public, max-age={max_age_s}")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            # Hanging also stands in for Identity Toolkit's user lookup (a POST) in tests.
            do_POST = do_GET

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/certs"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    @property
    def hanging(self) -> bool:
        return not self._release.is_set()

    @hanging.setter
    def hanging(self, value: bool) -> None:
        if value:
            self._release.clear()
        else:
            self._release.set()

    def close(self) -> None:
        self.hanging = False
        self._httpd.shutdown()
        self._httpd.server_close()

    def claims(self, user_id: str, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": f"https://securetoken.google.com/{self.project_id}",
            "aud": self.project_id,
            "auth_time": now - 10,
            "user_id": user_id,
            "sub": user_id,
            "iat": now - 10,
            "exp": now + 3600,
            "firebase": {"identities": {}, "sign_in_provider": "password"},
        }
        claims.update(overrides)
        return claims

    def token(self, user_id: str, **overrides: Any) -> str:
        return self.key.sign(self.claims(user_id, **overrides))
