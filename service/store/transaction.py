"""One MongoDB transaction, run again when it lost a race with another.

    result = await in_transaction(client, body)   # body(session) -> result, all or nothing

Two transactions writing the same documents conflict inside MongoDB; the loser is told so
(``TransientTransactionError``, ``WriteConflict``) and runs again after a short random pause, a
few times: racing writers of one key (a retried page, two runs of one job) are few, so this
bound is never the limit. A dead server is not a race: it fails at once, for the caller's own
patience to wait out. Not ``session.with_transaction``: that retries any transient error for up
to 120 s, a dead server included. The deployment's MongoDB is a replica set, which transactions
need. An exception the body raises aborts the transaction: nothing it wrote stays.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pymongo import AsyncMongoClient
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import ConnectionFailure, OperationFailure, PyMongoError

from service.backoff import Backoff, pause

ATTEMPTS = 8
CONFLICT_BACKOFF = Backoff(first_s=0.005, max_s=1.0, jitter=1.0)
_T = TypeVar("_T")


def conflicted(exc: PyMongoError) -> bool:
    """Another transaction wrote the same documents first: run ours again."""
    if isinstance(exc, ConnectionFailure):
        return False  # a dead server is not a race: fail fast, the caller retries later
    return exc.has_error_label("TransientTransactionError") or (
        isinstance(exc, OperationFailure) and exc.code == 112  # WriteConflict
    )


async def in_transaction(
    client: AsyncMongoClient[Any], body: Callable[[AsyncClientSession], Awaitable[_T]]
) -> _T:
    """``body(session)``'s result, its writes committed together; run again on a lost race."""
    delays = CONFLICT_BACKOFF.delays()
    for attempt in range(ATTEMPTS):
        async with client.start_session() as session:
            try:
                async with await session.start_transaction():
                    result = await body(session)
                return result
            except PyMongoError as exc:
                if attempt + 1 == ATTEMPTS or not conflicted(exc):
                    raise
        await pause(next(delays))  # jittered: spreads the racers apart
    raise AssertionError("unreachable")  # the last attempt returns or raises
