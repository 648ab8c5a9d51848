"""``make run``: the whole service on one machine.

Starts an embedded MongoDB (single-node replica set, data in ``.data/mongo``) and Redis
(append-only file in ``.data/redis``) unless ``MONGODB_URL`` / ``REDIS_URL`` are set, syncs the
indexes, then runs the API (granian) and one worker, and keeps them running: one that exits
is restarted with backoff (``devstack/supervisor.py``) while the other keeps serving. Ctrl-C
stops everything it started, in reverse order. A lock file keeps a second ``make run`` from
opening the same data directory.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from devstack.api import api_command
from devstack.embedded import (
    EmbeddedError,
    Server,
    die_with_parent,
    port_in_use,
    start_mongod,
    start_redis,
)
from devstack.supervisor import Child
from service.settings import EMBEDDED_MONGO_PORT, EMBEDDED_REDIS_PORT

DATA = Path(".data")
DEV_EMULATOR_HOST = "127.0.0.1:9099"


def _lock() -> int:
    DATA.mkdir(exist_ok=True)
    fd = os.open(DATA / "run.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
        sys.exit(
            f"pdf-chapter-jobs is already running (pid {holder}) on {DATA.resolve()}; stop it first"
        )
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd


def _embedded(env: dict[str, str]) -> list[Server]:
    servers: list[Server] = []
    if not env.get("MONGODB_URL"):
        if port_in_use(EMBEDDED_MONGO_PORT):
            sys.exit(
                f"port {EMBEDDED_MONGO_PORT} is taken: stop what listens there or set MONGODB_URL"
            )
        print(f"starting embedded mongod on 127.0.0.1:{EMBEDDED_MONGO_PORT} (data in .data/mongo)")
        servers.append(start_mongod(DATA / "mongo", EMBEDDED_MONGO_PORT))
        env["MONGODB_URL"] = servers[-1].url
    if not env.get("REDIS_URL"):
        if port_in_use(EMBEDDED_REDIS_PORT):
            sys.exit(
                f"port {EMBEDDED_REDIS_PORT} is taken: stop what listens there or set REDIS_URL"
            )
        print(
            f"starting embedded redis-server on 127.0.0.1:{EMBEDDED_REDIS_PORT} "
            "(data in .data/redis)"
        )
        servers.append(start_redis(DATA / "redis", EMBEDDED_REDIS_PORT, persistent=True))
        env["REDIS_URL"] = servers[-1].url
    return servers


def main() -> int:
    # When `make` itself is killed (not just Ctrl-C'd), shut down in order rather than orphan.
    die_with_parent()
    lock = _lock()
    env = dict(os.environ)
    if env.get("APP_ENV", "development") != "production":
        # Development tokens from `make token` need emulator mode; set it explicitly to override.
        env.setdefault("FIREBASE_AUTH_EMULATOR_HOST", DEV_EMULATOR_HOST)
    port = env.setdefault("PORT", "8000")

    stopping = False

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)

    servers: list[Server] = []
    children: list[Child] = []
    code = 0
    try:
        servers = _embedded(env)
        os.environ.update(env)
        subprocess.run([sys.executable, "-m", "indexes", "sync"], check=True, env=env)
        api = api_command(port, host=env.get("HOST", "127.0.0.1"))
        children = [
            Child("api", api, env),
            Child("worker", [sys.executable, "-m", "worker"], env),
        ]
        for child in children:
            child.start()
        print(f"pdf-chapter-jobs on http://127.0.0.1:{port} (OpenAPI at /schema); Ctrl-C stops it")
        while not stopping:
            for child in children:
                child.watch()
            time.sleep(0.2)
    except (EmbeddedError, subprocess.CalledProcessError) as exc:
        print(f"cannot start: {exc}", file=sys.stderr)
        code = 1
    finally:
        for child in reversed(children):
            print(f"stopping {child.name}")
            child.stop()
        for server in reversed(servers):
            print(f"stopping {server.name}")
            server.stop()
        os.close(lock)
    return code


if __name__ == "__main__":
    sys.exit(main())
