"""Who this worker is: ``host/slot``, the same again when it is restarted on the same host.

The slot is the lowest number whose lock file this process can take (``flock``, exclusive, not
waiting) in ``pcj-worker-slots`` under the temporary directory, one set of files per deployment
(a hash of ``MONGODB_URL`` and ``MONGODB_DB``: the database the identities live in). The kernel
drops a lock when its process dies, however it dies. So a worker started after one was killed
on this host takes the dead one's slot, and knows for sure that nothing else runs under that
identity: the leases it finds held by its own id are a dead predecessor's, to hand back at once
(``worker/liveness.py``). A worker stopped with SIGSTOP keeps its lock: one started meanwhile
takes another slot, and the stopped one is judged only by its liveness record going stale.

Containers: a restarted container keeps its host name and its files, so its worker finds its
slot again; each container of a scaled service has its own host name.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import socket
import tempfile
from dataclasses import dataclass, field

from service.domain.job import new_id
from service.settings import Settings

log = logging.getLogger("worker.identity")

# Workers of one deployment on one host, at most. Past it (or without a writable temporary
# directory) a worker runs under a one-off identity: restarted, it cannot find its predecessor,
# whose jobs then wait for its record to go stale (WORKER_STALE_S).
MAX_SLOTS = 256


@dataclass(frozen=True, slots=True)
class Identity:
    """This process as a worker: its host, its slot there, and this incarnation of it."""

    host: str
    slot: int | None  # None: a one-off identity (no slot could be locked)
    incarnation: str
    pid: int
    _lock: int | None = field(default=None, compare=False, repr=False)

    @property
    def worker_id(self) -> str:
        """What the leases of this worker carry: ``host/slot``."""
        return f"{self.host}/{self.slot if self.slot is not None else self.incarnation}"

    def release(self) -> None:
        """Give the slot back (the process ending does it too)."""
        if self._lock is not None:
            os.close(self._lock)


def deployment(settings: Settings) -> str:
    """A short name for the database the workers' identities live in."""
    digest = hashlib.sha256(f"{settings.mongodb_url}\0{settings.mongodb_db}".encode())
    return digest.hexdigest()[:16]


def take_identity(
    settings: Settings, *, directory: str | None = None, host: str | None = None
) -> Identity:
    """Lock the lowest free slot of this deployment on this host; this worker's identity."""
    host = host or socket.gethostname()
    incarnation = new_id()
    # Lock files stay when their worker ends (removing one another worker may be opening would
    # let two workers lock one slot): a few empty files per deployment, kept in one folder.
    folder = os.path.join(directory or tempfile.gettempdir(), "pcj-worker-slots")
    name = deployment(settings)
    for slot in range(MAX_SLOTS):
        path = os.path.join(folder, f"{name}-{slot}.lock")
        try:
            os.makedirs(folder, mode=0o700, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            log.warning("no worker slot: %s is not writable (%s)", folder, exc)
            break
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held by a live worker (a stopped one included)
            os.close(fd)
            continue
        return Identity(host, slot, incarnation, os.getpid(), fd)
    log.warning("worker %s/%s runs under a one-off identity", host, incarnation)
    return Identity(host, None, incarnation, os.getpid())
