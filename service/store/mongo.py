"""MongoDB connection: PyMongo's native async client, with Beanie on top.

A short server-selection timeout turns a dead database into a fast 503 instead of a 30 s hang;
the client reconnects by itself when the server comes back.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from dataclasses import dataclass
from typing import Any

from beanie import init_beanie
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import ConnectionFailure

from service.settings import Settings
from service.store.documents import DOCUMENT_MODELS

Doc = dict[str, Any]
log = logging.getLogger("service.db")


@dataclass(frozen=True, slots=True)
class Mongo:
    """The client and the service's database, created once per process."""

    client: AsyncMongoClient[Doc]
    db: AsyncDatabase[Doc]

    async def ping(self) -> None:
        """Raise unless the server answers."""
        await self.client.admin.command("ping")

    async def close(self) -> None:
        await self.client.close()


def socket_timeout_ms(settings: Settings) -> int:
    """How long a query may wait for MongoDB's answer on a connection it already has."""
    return max(settings.mongodb_timeout_ms * 5, 10_000)


def create_client(settings: Settings) -> AsyncMongoClient[Doc]:
    """A client that fails fast when MongoDB is unreachable."""
    timeout = settings.mongodb_timeout_ms
    return AsyncMongoClient(
        settings.mongodb_url,
        tz_aware=True,
        serverSelectionTimeoutMS=timeout,
        connectTimeoutMS=timeout,
        socketTimeoutMS=socket_timeout_ms(settings),
        appname="pdf-chapter-jobs",
    )


async def connect(settings: Settings, *, wait_s: float | None = None) -> Mongo:
    """Connect and register the Beanie documents. Never creates or drops indexes.

    Beanie reads the server's build info at init, so this needs MongoDB up: it retries for
    ``wait_s`` seconds (``MONGODB_STARTUP_WAIT_S``) so that a process started together with its
    database waits for it instead of crash-looping.
    """
    wait = settings.mongodb_startup_wait_s if wait_s is None else wait_s
    deadline = time.monotonic() + wait
    client = create_client(settings)
    db = client[settings.mongodb_db]
    while True:
        try:
            # skip_indexes: index changes belong to `python -m indexes sync`, never to a boot.
            await init_beanie(database=db, document_models=DOCUMENT_MODELS, skip_indexes=True)
            return Mongo(client=client, db=db)
        except ConnectionFailure as exc:
            if time.monotonic() >= deadline:
                await client.close()
                raise MongoUnavailable(
                    f"MongoDB at {redacted(settings.mongodb_url)} unreachable: {type(exc).__name__}"
                ) from None
            log.warning("waiting for MongoDB at %s", redacted(settings.mongodb_url))
            await asyncio.sleep(1.0)


class MongoUnavailable(RuntimeError):
    """MongoDB did not answer within the startup wait."""


def redacted(url: str) -> str:
    """The URL without its password, for logs."""
    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", url)
