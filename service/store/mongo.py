"""The MongoDB connection: PyMongo's native async client, failing fast, waiting at start-up.

A short server-selection timeout turns a dead database into a fast 503 instead of a 30 s hang;
the client reconnects by itself when the server comes back.

What a write and a read promise on a replica set (``docs/operations.md``, "MongoDB as a
replica set"):

- Writes wait for ``MONGODB_WRITE_CONCERN`` members, ``majority`` by default: every write
  acknowledged to a client (a job created, an upload, a page stored, progress shown) survives
  the loss of the primary; a write acknowledged by the primary alone may be rolled back by the
  failover that replaces it, and a page, a job or a progress a client saw would vanish. No
  ``wtimeout``: a write that cannot reach a majority waits until the socket timeout, an error
  the worker waits out (``service/store/failure.py``), and every write here is safe to repeat.
- Reads go to the primary (``readPreference=primary``, read concern ``local``): a poll sees the
  job its client has just created or cancelled. During an election nothing answers and the API
  says 503 within ``MONGODB_TIMEOUT_MS``. The one read that must not see a write a failover
  could still roll back, the pages a resumed run keeps, asks for ``majority``
  (``service/store/chapters.py``).
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.errors import ConnectionFailure

from service.backoff import Backoff, pause
from service.domain.errors import MongoUnavailable
from service.settings import Settings

Doc = dict[str, Any]
log = logging.getLogger("service.db")

# How often a starting process asks whether MongoDB is up yet.
STARTUP_BACKOFF = Backoff(first_s=0.25, max_s=1.0)


def socket_timeout_ms(settings: Settings) -> int:
    """How long a query may wait for MongoDB's answer on a connection it already has."""
    return max(settings.mongodb_timeout_ms * 5, 10_000)


def write_concern(settings: Settings) -> str | int:
    """``MONGODB_WRITE_CONCERN`` as the driver takes it: ``"majority"`` or a member count."""
    value = settings.mongodb_write_concern
    return value if value == "majority" else int(value)


def create_client(settings: Settings, *, index_builds: bool = False) -> AsyncMongoClient[Doc]:
    """A client that fails fast when MongoDB is unreachable, with the write concern and read
    preference above.

    ``index_builds``: one that waits for an answer however long it takes (no socket timeout),
    for ``python -m indexes``: building the text index over 110,000 passages took 17-54 s,
    past the service's socket timeout, which then cut the build's command off.
    """
    timeout = settings.mongodb_timeout_ms
    return AsyncMongoClient(
        settings.mongodb_url,
        tz_aware=True,
        w=write_concern(settings),
        readPreference="primary",
        serverSelectionTimeoutMS=timeout,
        connectTimeoutMS=timeout,
        socketTimeoutMS=None if index_builds else socket_timeout_ms(settings),
        appname="pdf-chapter-jobs",
    )


async def connect(settings: Settings, *, wait_s: float | None = None) -> AsyncMongoClient[Doc]:
    """A client whose server has answered. Never creates or drops indexes.

    Retries for ``wait_s`` seconds (``MONGODB_STARTUP_WAIT_S``), so that a process started
    together with its database waits for it instead of crash-looping.
    """
    wait = settings.mongodb_startup_wait_s if wait_s is None else wait_s
    deadline = time.monotonic() + wait
    client = create_client(settings)
    delays = STARTUP_BACKOFF.delays()
    while True:
        try:
            await client.admin.command("ping")
            return client
        except ConnectionFailure as exc:
            if time.monotonic() >= deadline:
                await client.close()
                raise MongoUnavailable(
                    f"MongoDB at {redacted(settings.mongodb_url)} unreachable: {type(exc).__name__}"
                ) from None
            log.warning("waiting for MongoDB at %s", redacted(settings.mongodb_url))
            await pause(next(delays))


def redacted(url: str) -> str:
    """The URL without its password, for logs."""
    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", url)
