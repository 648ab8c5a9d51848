"""``python -m worker`` as a process of its own, on the test databases, for the tests that need
a real worker: its memory, its listening sockets, its fairness between users."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import IO, Any

from service.settings import Settings
from tests.conftest import REPO_ROOT


def spawn_worker(
    settings: Settings, log: IO[Any] | None = None, **env: str
) -> subprocess.Popen[bytes]:
    """The worker, its log to the file ``log`` (else nowhere); ``env``: more settings."""
    environment = {
        **os.environ,
        "MONGODB_URL": settings.mongodb_url,
        "MONGODB_DB": settings.mongodb_db,
        "REDIS_URL": settings.redis_url,
        "FIREBASE_PROJECT_ID": settings.firebase_project_id,
        "PROGRESS_INTERVAL_S": "0",
        "WORKER_METRICS_PORT": "0",
        **env,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "worker"],
        cwd=REPO_ROOT,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL if log is None else log,
    )


def memory_kb(pid: int, field: str) -> int:
    """A ``/proc/<pid>/status`` memory figure in KB: ``VmRSS`` now, ``VmHWM`` its peak so far."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise LookupError(field)
