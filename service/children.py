"""A child process that talks to its parent over one end of a socket pair.

    process, sock = start_on_socket(context, serve, (arg, ...), name="embedding")

``target(their_end, *args)`` runs in a daemon child started from ``context`` (the caller's
start method: spawn for the embedding process, forkserver for the render processes); the
parent keeps ``sock``, its own end, and closes the child's end at once, so that either side sees
end of file when the other is gone. Blocking: call it from a thread when a loop is running.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from multiprocessing.context import BaseContext
from multiprocessing.process import BaseProcess
from typing import Any


def start_on_socket(
    context: BaseContext, target: Callable[..., Any], args: tuple[Any, ...], *, name: str
) -> tuple[BaseProcess, socket.socket]:
    """Start ``target(their_end, *args)`` in a daemon child; the child and our end."""
    ours, theirs = socket.socketpair()
    process = context.Process(  # type: ignore[attr-defined]
        target=target, args=(theirs, *args), name=name, daemon=True
    )
    try:
        process.start()
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()
    return process, ours
