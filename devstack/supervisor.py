"""``make run``'s children kept running: one that exits is started again, with backoff.

A crashed API or worker costs its own restart, never the rest: the other child keeps serving.
What a crashed child leaves behind (granian's worker processes, a worker's PDF children) is
killed with it, so the new one gets the port and nothing parses for nobody.
Each restart is logged with the exit status and the delay; the delay starts at one second and
doubles up to ``MAX_DELAY_S`` while the child keeps crashing, and starts over once a child has
run for ``STABLE_S``. Stopping (Ctrl-C) stops every child, whatever state it is in.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from devstack.embedded import stop
from service.backoff import Backoff

# A child that keeps crashing is started again after 1, 2, 4 ... 30 s.
RESTARTS = Backoff(first_s=1.0, max_s=30.0)
FIRST_DELAY_S = RESTARTS.first_s
MAX_DELAY_S = RESTARTS.max_s
STABLE_S = 60.0  # a child that ran this long before exiting is restarted after FIRST_DELAY_S

Spawn = Callable[[list[str], dict[str, str]], "subprocess.Popen[bytes]"]


def spawn_attached(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Output to this terminal; its own session, so Ctrl-C reaches only us and we stop the
    children in order."""
    return subprocess.Popen(args, env=env, start_new_session=True)


@dataclass
class Child:
    """One supervised process: ``watch`` it often; ``stop`` it once."""

    name: str
    args: list[str]
    env: dict[str, str]
    spawn: Spawn = spawn_attached
    clock: Callable[[], float] = time.monotonic
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)
    restarts: int = field(default=0, init=False)
    delay_s: float = field(default=FIRST_DELAY_S, init=False)
    _started_at: float = field(default=0.0, init=False)
    _due_at: float | None = field(default=None, init=False)  # when an exited child starts again

    def start(self) -> None:
        self.process = self.spawn(self.args, self.env)
        self._started_at = self.clock()
        self._due_at = None

    def watch(self) -> None:
        """Notice an exit and schedule the restart, or restart when it is due."""
        if self.process is None or self.process.poll() is None:
            return
        now = self.clock()
        if self._due_at is None:
            # What it left behind goes with it: granian's worker processes would go on
            # serving the port, a worker's PDF children would go on parsing.
            _kill_group(self.process.pid)
            if now - self._started_at >= STABLE_S:
                self.delay_s = FIRST_DELAY_S
            self._due_at = now + self.delay_s
            print(
                f"{self.name} exited with {_status(self.process.returncode)}; "
                f"restarting it in {self.delay_s:g} s",
                file=sys.stderr,
                flush=True,
            )
            self.delay_s = RESTARTS.after(self.delay_s)
        elif now >= self._due_at:
            self.restarts += 1
            self.start()
            print(
                f"{self.name} restarted (restart {self.restarts}, pid {self.process.pid})",
                file=sys.stderr,
                flush=True,
            )

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (a graceful stop: the API drains, the worker hands its jobs back), SIGKILL
        after ``timeout``; then whatever is left of its process group."""
        if self.process is not None:
            stop(self.process, timeout=timeout)
            _kill_group(self.process.pid)


def _kill_group(pgid: int) -> None:
    # Each child leads a process group of its own (start_new_session): its group id is its pid,
    # and no other group can take that id while one of its members lives.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _status(code: int | None) -> str:
    if code is not None and code < 0:
        return signal.Signals(-code).name
    return f"status {code}"
