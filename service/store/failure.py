"""Which failures of our infrastructure are transient (wait and retry) and which are not.

A transient failure is MongoDB or Redis being briefly unreachable or changing primaries: a
network error, a timeout, a server shutting down or stepping down. It never fails a user's job:
the run waits and retries while its lease holds, or hands the job back. Anything else is a bug
or a problem with the PDF itself, and is treated as such by the caller.
"""

from __future__ import annotations

from pymongo.errors import ConnectionFailure, OperationFailure, PyMongoError, WriteConcernError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

# MongoDB server error codes a retry can outlive (the driver's own retryable set, spelled out
# so that a driver upgrade cannot silently change what fails a job):
# HostUnreachable 6, HostNotFound 7, NetworkTimeout 89, ShutdownInProgress 91,
# PrimarySteppedDown 189, ExceededTimeLimit 262, SocketException 9001, NotWritablePrimary 10107,
# InterruptedAtShutdown 11600, InterruptedDueToReplStateChange 11602, NotPrimaryNoSecondaryOk 13435,
# NotPrimaryOrSecondary 13436, ReadConcernMajorityNotAvailableYet 134, RecvStaleConfig 10058.
MONGODB_TRANSIENT_CODES = frozenset(
    {6, 7, 89, 91, 134, 189, 262, 9001, 10058, 10107, 11600, 11602, 13435, 13436}
)
TRANSIENT_LABELS = (
    "RetryableWriteError",
    "TransientTransactionError",
    "ResumableChangeStreamError",
)


def is_transient(exc: BaseException) -> bool:
    """True for a failure of MongoDB or Redis that waiting can outlive."""
    if isinstance(exc, ConnectionFailure | RedisConnectionError | RedisTimeoutError | TimeoutError):
        return True
    if isinstance(exc, ConnectionResetError | ConnectionRefusedError | BrokenPipeError):
        return True
    if isinstance(exc, PyMongoError) and any(exc.has_error_label(x) for x in TRANSIENT_LABELS):
        return True
    if isinstance(exc, OperationFailure | WriteConcernError):
        return exc.code in MONGODB_TRANSIENT_CODES
    # A bulk write reports its failures per operation; it is transient if every one is.
    details = getattr(exc, "details", None)
    if isinstance(details, dict) and details.get("writeErrors"):
        return all(error.get("code") in MONGODB_TRANSIENT_CODES for error in details["writeErrors"])
    return False
