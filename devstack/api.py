"""The API's server command line, one for ``make run``, the tests and the benchmarks (the
container's ``docker/entrypoint.sh`` spells out the same flags).

- ``--backpressure``: every open event stream is a request in flight, and granian's default
  (1,024 per worker) would stall every other request once 1,024 streams are open;
  ``STREAM_MAX_OPEN`` stays below it.
- ``--workers-kill-timeout 10``: on shutdown granian drains requests in flight, but an event
  stream lasts as long as its job: after 10 s it is cut, and ``EventSource`` reconnects.
"""

from __future__ import annotations

import sys

BACKPRESSURE = 8192
KILL_TIMEOUT_S = 10


def api_command(
    port: int | str,
    *,
    host: str = "127.0.0.1",
    backpressure: int = BACKPRESSURE,
    log_level: str | None = None,
) -> list[str]:
    """``python -m granian ...`` serving ``service.api.app:app_factory`` on ``host:port``."""
    command = [
        sys.executable, "-m", "granian", "--interface", "asgi", "--factory", "--workers", "1",
        "--host", host, "--port", str(port), "--no-ws", "--loop", "uvloop",
        "--backpressure", str(backpressure), "--workers-kill-timeout", str(KILL_TIMEOUT_S),
    ]  # fmt: skip
    if log_level is not None:
        command += ["--log-level", log_level]
    return [*command, "service.api.app:app_factory"]
