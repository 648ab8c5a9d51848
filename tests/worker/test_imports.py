"""The worker process never loads the web framework or firebase-admin (issue 10): it needs the
domain and the store only. import-linter checks the imports statically (`make lint`); this checks
what a real worker process actually has in memory."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO_ROOT


def test_the_worker_process_loads_neither_litestar_nor_firebase_admin():
    probe = (
        "import json, sys, worker.__main__, worker.wiring, worker.run.task, worker.sweeper;"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('litestar', 'firebase_admin') or m.startswith('service.api'))))"
    )

    loaded = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, check=True, timeout=60
    )

    assert json.loads(loaded.stdout) == []
