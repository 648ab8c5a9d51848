"""What each user stores, counted in MongoDB so that every process sees the same figure, and
taken against ``STORAGE_QUOTA_MB`` before it is written.

    stored_bytes(user)             uploads + everything the user holds: the quota's figure
    take(user, holdings, quota)    hold more bytes, all or none; ``StorageQuotaExceeded`` past it
    give_back(prefix)              every holding under a prefix (a chapter) is given back

Two sources, each owned by one user and summed one way:

- **Uploads** (GridFS ``pdf_files``): the files documents carry ``metadata.user_id`` and
  ``length``, summed over the ``metadata_user_id_length`` index alone.
- **Holdings**: everything else stored for a user, recorded one document per thing in
  ``holdings`` (``_id``: its key, ``user_id``, ``bytes``, ``kind``) before it is written: each
  page image and thumbnail, a ``pdf_file`` chapter's copy of its PDF (``metered.py`` takes them
  as the page store puts them, on GridFS and S3 alike), and each page's text
  (``text_holdings`` in ``service/store/chapters.py``, taken by the run a megabyte at a time:
  ``worker/run/room.py``), and each chapter's search passages as one (``passages_key``, taken by
  the indexer before it writes them). Their sum per user is kept in ``usage`` (``_id``: the user,
  ``bytes``), changed in the same transaction as the holdings, so the two never disagree.

Why a ledger in MongoDB: an S3 bucket can only be summed by listing it, and a sum over the
holdings themselves costs 8 ms for 15,000 of them and 84 ms for 100,000 (one user's 5,000-page
chapters; measured on this machine's mongod, covered index), on every upload and every page.
The counter costs one document read; a take is one transaction, 4.4 ms against 1.7 ms for a
plain upsert.

Everything of one chapter is held under its prefix (``chapters/{chapter_id}/``), so deleting a
chapter, or discarding what a failed job wrote, gives back exactly what it took: ``give_back``
of that prefix. A new kind of stored bytes counts by being taken under its chapter's prefix
before it is written, as the search passages are; it is then given back with the chapter.

A retried write of a key replaces its holding: the user holds its new size, never both. A take
that would pass the quota writes nothing and raises; the quota is never passed by racing writers
(the counter is read after its own increment, in the transaction). A failure between a holding
and its object leaves the user holding bytes that are not stored, never the reverse: an object
is written after its holding and deleted before it is given back.
"""

from __future__ import annotations

import asyncio
import re
import weakref
from collections import Counter
from dataclasses import dataclass
from typing import Any, Literal

from pymongo import DeleteOne, ReplaceOne, ReturnDocument
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection

from service.domain.errors import StorageQuotaExceeded
from service.store.collections import Collections
from service.store.transaction import in_transaction

Kind = Literal["page", "thumbnail", "pdf", "text", "passages"]
# Holdings given back per transaction: a 5,000-page chapter holds 15,000 (images, thumbnails,
# text); each transaction stays small for WiredTiger's cache, and each is exact on its own.
GIVE_BACK_BATCH = 5_000


@dataclass(frozen=True, slots=True)
class Holding:
    """Bytes a user keeps under ``key`` (a page store key, or ``text_key``)."""

    key: str
    bytes: int
    kind: Kind


async def _bytes_in(collection: AsyncCollection[Any], user_id: str, session: Any = None) -> int:
    cursor = await collection.aggregate(
        [
            {"$match": {"metadata.user_id": user_id}},
            {"$group": {"_id": None, "bytes": {"$sum": "$length"}}},
        ],
        session=session,
    )
    rows = await cursor.to_list()
    return int(rows[0]["bytes"]) if rows else 0


class Usage:
    """A user's stored bytes: uploads, and the ledger of holdings."""

    def __init__(self, collections: Collections) -> None:
        self._client = collections.db.client
        self._uploads = collections.upload_files
        self._holdings = collections.holdings
        self._totals = collections.usage
        # One take at a time per user in this process: a job's uploads in flight all take from
        # one counter, and racing transactions of one process would only abort each other.
        self._turns: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    async def stored_bytes(self, user_id: str, session: AsyncClientSession | None = None) -> int:
        """Bytes the user stores: uploaded PDFs plus everything held."""
        total = await self._totals.find_one({"_id": user_id}, {"bytes": 1}, session=session)
        return await _bytes_in(self._uploads, user_id, session) + int((total or {}).get("bytes", 0))

    async def take(
        self, user_id: str, holdings: list[Holding], quota_bytes: int, what: str = "this chapter"
    ) -> None:
        """Hold ``holdings`` for ``user_id``, each replacing what its key held: all of them, or,
        when the user's stored bytes would then pass ``quota_bytes``, none
        (``StorageQuotaExceeded``, saying ``what`` does not fit)."""
        if not holdings:
            return
        wanted = {holding.key: holding for holding in holdings}  # the last of a repeated key

        async def body(session: AsyncClientSession) -> None:
            previous = self._holdings.find(
                {"_id": {"$in": list(wanted)}}, {"user_id": 1, "bytes": 1}, session=session
            )
            given_back: Counter[str] = Counter()
            async for doc in previous:
                given_back[str(doc["user_id"])] += int(doc["bytes"])
            await self._holdings.bulk_write(
                [
                    ReplaceOne(
                        {"_id": h.key},
                        {"user_id": user_id, "bytes": h.bytes, "kind": h.kind},
                        upsert=True,
                    )
                    for h in wanted.values()
                ],
                ordered=False,
                session=session,
            )
            taken = sum(h.bytes for h in wanted.values()) - given_back.pop(user_id, 0)
            for other, nbytes in given_back.items():  # a key moving to another owner
                await self._add(other, -nbytes, session)
            if not taken:
                return
            held = await self._add(user_id, taken, session)
            if taken > 0:  # a smaller replacement is never refused
                uploads = await _bytes_in(self._uploads, user_id, session)
                if held + uploads > quota_bytes:  # raised inside: the transaction is aborted
                    raise StorageQuotaExceeded(held - taken + uploads, quota_bytes, what)

        turn = self._turns.get(user_id)
        if turn is None:
            turn = self._turns[user_id] = asyncio.Lock()
        async with turn:
            await in_transaction(self._client, body)

    async def _add(self, user_id: str, nbytes: int, session: AsyncClientSession) -> int:
        doc = await self._totals.find_one_and_update(
            {"_id": user_id},
            {"$inc": {"bytes": nbytes}},
            upsert=True,
            return_document=ReturnDocument.AFTER,
            session=session,
        )
        return int((doc or {}).get("bytes", 0))  # an upsert always returns the document

    async def give_back(self, prefix: str) -> int:
        """Give back every holding under ``prefix`` to whoever held it; the bytes given back.
        Idempotent: what is given back is no longer held."""
        pattern = {"$regex": "^" + re.escape(prefix)}
        returned = 0

        async def batch(session: AsyncClientSession) -> int:
            docs = await self._holdings.find(
                {"_id": pattern}, {"user_id": 1, "bytes": 1}, session=session
            ).to_list(GIVE_BACK_BATCH)
            if not docs:
                return -1
            owed: Counter[str] = Counter()
            for doc in docs:
                owed[str(doc["user_id"])] += int(doc["bytes"])
            await self._holdings.bulk_write(
                [DeleteOne({"_id": doc["_id"]}) for doc in docs], session=session
            )
            for user_id, nbytes in owed.items():
                await self._add(user_id, -nbytes, session)
            return sum(owed.values())

        while (given := await in_transaction(self._client, batch)) >= 0:
            returned += given
        return returned

    async def held(self, prefix: str) -> int:
        """Bytes held under ``prefix``, whoever holds them (for operators and tests)."""
        cursor = await self._holdings.aggregate(
            [
                {"$match": {"_id": {"$regex": "^" + re.escape(prefix)}}},
                {"$group": {"_id": None, "bytes": {"$sum": "$bytes"}}},
            ]
        )
        rows = await cursor.to_list()
        return int(rows[0]["bytes"]) if rows else 0
