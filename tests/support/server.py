"""The API as a real server: granian in a subprocess on a free port, against the session's
mongod and redis-server, with emulator-mode (development) tokens."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from devstack.api import api_command
from devstack.embedded import free_port
from service.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]
EMULATOR_HOST = "127.0.0.1:9099"  # never contacted: emulator tokens are verified locally


def wait_port(port: int, process: subprocess.Popen[bytes], what: str) -> None:
    for _ in range(300):
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on {port}")


@contextmanager
def granian_api(
    settings: Settings, project_id: str, log: Path, port: int | None = None, **env: str
) -> Iterator[int]:
    """Serve ``service.api.app:app_factory`` until the block ends; yields the port (``port``,
    or a free one)."""
    port = port or free_port()
    environment = {
        **os.environ,
        "MONGODB_URL": settings.mongodb_url,
        "MONGODB_DB": settings.mongodb_db,
        "REDIS_URL": settings.redis_url,
        "FIREBASE_PROJECT_ID": project_id,
        "FIREBASE_AUTH_EMULATOR_HOST": EMULATOR_HOST,
        **env,
    }
    with open(log, "ab") as out:
        process = subprocess.Popen(
            api_command(port), cwd=REPO_ROOT, env=environment, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_port(port, process, "the API")
        yield port
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)
