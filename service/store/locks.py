"""A named lease in MongoDB: one holder at a time, and it expires by itself.

One document per lock in ``locks``: ``{_id: name, holder, expires_at}``. Taking it is one atomic
upsert that changes the lock only where it is free (expired, or not there yet) or already the
caller's, and tells the caller whether it holds it afterwards. Expiry is read on MongoDB's clock
(``$$NOW``), so the workers' clocks need not agree. A holder that dies keeps
it until it expires; one that stops cleanly gives it back.

The worker's sweeper takes ``sweeper`` so that one sweep runs at a time across all workers. What
it guards is efficiency, not correctness: every transition a sweep makes is guarded by itself.
"""

from __future__ import annotations

from typing import Any

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from service.store.collections import Collections

Doc = dict[str, Any]


class Locks:
    """Named leases, one document each in ``locks``."""

    def __init__(self, collections: Collections) -> None:
        self._locks = collections.locks

    async def acquire(self, name: str, holder: str, ttl_s: float) -> bool:
        """Take or renew ``name`` for ``ttl_s`` seconds; False while someone else holds it."""
        # One upsert: fields change only where the lock is free (expired, or new: a missing
        # expires_at sorts before any date) or already the caller's; then the holder says who won.
        free_or_mine = {"$or": [{"$eq": ["$holder", holder]}, {"$lte": ["$expires_at", "$$NOW"]}]}
        take = [
            {
                "$set": {
                    "holder": {"$cond": [free_or_mine, holder, "$holder"]},
                    "expires_at": {
                        "$cond": [
                            free_or_mine,
                            {"$add": ["$$NOW", int(ttl_s * 1000)]},
                            "$expires_at",
                        ]
                    },
                }
            }
        ]
        try:
            doc = await self._locks.find_one_and_update(
                {"_id": name}, take, upsert=True, return_document=ReturnDocument.AFTER
            )
        except DuplicateKeyError:  # two first takers raced; the other one inserted it
            return False
        return doc is not None and doc.get("holder") == holder

    async def release(self, name: str, holder: str) -> bool:
        """Give ``name`` back, if ``holder`` still has it."""
        result = await self._locks.delete_one({"_id": name, "holder": holder})
        return result.deleted_count == 1
