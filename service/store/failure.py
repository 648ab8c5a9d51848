"""Which failures of our infrastructure are transient (wait and retry) and which are not.

A transient failure is MongoDB or Redis being briefly unreachable or changing primaries: a
network error, a timeout, a server shutting down or stepping down. It never fails a user's job:
the run waits and retries while its lease holds, or hands the job back. Anything else is a bug
or a problem with the PDF itself, and is treated as such by the caller.

    transient                                        permanent
    ─────────                                        ─────────
    pymongo ConnectionFailure (AutoReconnect,        DuplicateKeyError, a bad query or
      NotPrimaryError, NetworkTimeout,               update (OperationFailure with any
      ServerSelectionTimeoutError, pool cleared)     other code), InvalidOperation (a
    OperationFailure / WriteConcernError /           closed client: our bug)
      BulkWriteError whose codes are all below,
      or carrying a retryable error label
    redis ConnectionError (incl. BusyLoadingError),  redis ResponseError (WRONGTYPE, a
      TimeoutError, ReadOnlyError (failover),        bad script), DataError
      OutOfMemoryError, TryAgainError, cluster down,
      and the same refusals met inside a script
      (a ResponseError quoting READONLY, OOM, ...)
    OSError of a socket (refused, reset, broken      anything else: ValueError, KeyError,
      pipe), TimeoutError                            an ExtractionError about the PDF,
    PageStoreUnavailable (GridFS's MongoDB away,     PageStoreError (credentials, a
      S3 still failing after obstore's retries)      missing bucket)
    any of the above as the cause of another error

The worker's retries, its heartbeat, its hand-back and its sweeper, the doorbell, the rate
limiter and the upload slots (``service/limits/fail_open.py``) all ask ``is_transient``: one
answer to "may waiting fix this?".
"""

from __future__ import annotations

from pymongo.errors import (
    BulkWriteError,
    ConnectionFailure,
    OperationFailure,
    PyMongoError,
    WriteConcernError,
)
from redis.exceptions import ClusterDownError, ReadOnlyError, ResponseError, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError as RedisOutOfMemoryError
from redis.exceptions import TimeoutError as RedisTimeoutError

from service.domain.errors import PageStoreUnavailable

# MongoDB server error codes a retry can outlive (the driver's own retryable set, spelled out
# so that a driver upgrade cannot silently change what fails a job):
# HostUnreachable 6, HostNotFound 7, NetworkTimeout 89, ShutdownInProgress 91,
# PrimarySteppedDown 189, ExceededTimeLimit 262, SocketException 9001, NotWritablePrimary 10107,
# InterruptedAtShutdown 11600, InterruptedDueToReplStateChange 11602, NotPrimaryNoSecondaryOk 13435,
# NotPrimaryOrSecondary 13436, ReadConcernMajorityNotAvailableYet 134, RecvStaleConfig 10058;
# and CursorNotFound 43: a restarted server has forgotten the cursor a sweep was reading.
MONGODB_TRANSIENT_CODES = frozenset(
    {6, 7, 43, 89, 91, 134, 189, 262, 9001, 10058, 10107, 11600, 11602, 13435, 13436}
)
TRANSIENT_LABELS = (
    "RetryableWriteError",
    "TransientTransactionError",
    "ResumableChangeStreamError",
)
# Redis refusing for a while: a failover in progress (READONLY, MASTERDOWN, TRYAGAIN) or full
# memory that expiring keys will free.
REDIS_TRANSIENT = (
    RedisConnectionError,
    RedisTimeoutError,
    ReadOnlyError,
    RedisOutOfMemoryError,
    TryAgainError,
    ClusterDownError,
)
# Inside a Lua script Redis reports the same refusals as a ResponseError quoting their code:
# "Error running script (...): -READONLY You can't write against a read only replica."
REDIS_TRANSIENT_CODES = ("READONLY", "MASTERDOWN", "LOADING", "TRYAGAIN", "OOM", "CLUSTERDOWN")
SOCKET_ERRORS = (ConnectionError, TimeoutError)  # refused, reset, aborted, broken pipe, timed out
# The page store's own word for "unreachable or timed out: the same call may succeed later".
STORE_TRANSIENT = (PageStoreUnavailable,)
MAX_CAUSES = 5  # how far down a chain of ``raise ... from`` we look


def is_transient(exc: BaseException) -> bool:
    """True for a failure of MongoDB or Redis that waiting can outlive, or an error it caused."""
    seen: BaseException | None = exc
    for _ in range(MAX_CAUSES):
        if seen is None:
            return False
        if _is_transient_itself(seen):
            return True
        seen = seen.__cause__  # `raise ... from exc` only: a bug raised while handling one is a bug
    return False


def _is_transient_itself(exc: BaseException) -> bool:
    if isinstance(exc, (ConnectionFailure, *REDIS_TRANSIENT, *SOCKET_ERRORS, *STORE_TRANSIENT)):
        return True
    if isinstance(exc, ResponseError):
        message = str(exc)
        return any(
            f"-{code} " in message or message.startswith(code) for code in REDIS_TRANSIENT_CODES
        )
    if isinstance(exc, PyMongoError) and any(exc.has_error_label(x) for x in TRANSIENT_LABELS):
        return True
    if isinstance(exc, BulkWriteError):
        # A bulk write reports its failures per operation; transient if every one of them is.
        errors = [*exc.details.get("writeErrors", []), *exc.details.get("writeConcernErrors", [])]
        return bool(errors) and all(e.get("code") in MONGODB_TRANSIENT_CODES for e in errors)
    if isinstance(exc, OperationFailure | WriteConcernError):
        return exc.code in MONGODB_TRANSIENT_CODES
    return False
