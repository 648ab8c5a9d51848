"""The render process itself (``worker.rendering.process.serve``), spoken to over its socket."""

from __future__ import annotations

import multiprocessing
import socket

import msgspec

from tests.support.pdfs import text_pdf
from worker.rendering.process import HEADER, Open, serve

MB = 1024 * 1024


def test_a_render_process_whose_pool_hangs_up_mid_request_exits_quietly(tmp_path, capfd):
    """The worker killed while its render processes work: each finds its pool gone when it
    answers, and ends without a traceback (one per process used to bury the worker's log)."""
    path = tmp_path / "book.pdf"
    path.write_bytes(text_pdf(300))
    ours, theirs = socket.socketpair()
    # spawn, not the pool's forkserver: the child then writes to this test's captured stderr.
    process = multiprocessing.get_context("spawn").Process(
        target=serve, args=(theirs, 512 * MB, 4, None), daemon=True
    )
    process.start()
    theirs.close()
    frame = msgspec.msgpack.encode(Open(str(path)))
    ours.sendall(len(frame).to_bytes(HEADER, "big") + frame)
    ours.sendall(len(frame).to_bytes(HEADER, "big") + frame)  # unread when we hang up
    ours.close()  # before the answer: the pool is gone

    process.join(60)

    assert process.exitcode == 0
    assert "Traceback" not in capfd.readouterr().err
