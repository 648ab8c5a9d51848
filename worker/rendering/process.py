"""The render process: requests in over a socket, one page at a time, replies out.

A render process is forked from the pool's forkserver (PyMuPDF and Pillow already imported),
caps its own address space, keeps a few documents open, and answers each request of the
protocol below with exactly one reply. The framing is a 4-byte big-endian length, then msgpack.
Not pickle: the worker decodes replies into these exact types, so a process that a hostile PDF
took over cannot run code in the worker by what it sends back.
"""

from __future__ import annotations

import contextlib
import ctypes
import resource
import signal
import socket
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import BinaryIO

import msgspec
import pymupdf

from service.domain.errors import ExtractionError
from worker.rendering.estimate import page_pixels
from worker.rendering.page import (
    OUT_OF_MEMORY,
    DocumentInfo,
    RenderedPage,
    RenderOptions,
    is_allocation_failure,
    open_document,
    quiet_mupdf,
    render_page,
)

# Called in the render process before each page, with the PDF's path and the page index. Tests
# use it to crash or hang a process on one page; nothing in production sets it.
PageHook = Callable[[str, int], None]

MAX_FRAME = 64 * 1024 * 1024  # a 12 MP page is a few MB even as JPEG quality 100
HEADER = 4


# The protocol. Requests carry the paths the process should close first (jobs that ended).


class Open(msgspec.Struct, frozen=True, tag="open"):
    """Open the document at ``path``; the reply is ``Opened`` or ``Failed``."""

    path: str
    forget: tuple[str, ...] = ()


class Render(msgspec.Struct, frozen=True, tag="render"):
    """Render one page; the reply is ``Rendered`` or ``Failed``."""

    path: str
    index: int
    options: RenderOptions
    forget: tuple[str, ...] = ()


class Measure(msgspec.Struct, frozen=True, tag="measure"):
    """Count the pixels the document's page images will have; the reply is ``Measured`` or
    ``Failed``."""

    path: str
    options: RenderOptions
    forget: tuple[str, ...] = ()


class Opened(msgspec.Struct, frozen=True, tag="opened"):
    """What opening the document told us."""

    info: DocumentInfo


class Rendered(msgspec.Struct, frozen=True, tag="rendered"):
    """One rendered page."""

    page: RenderedPage


class Measured(msgspec.Struct, frozen=True, tag="measured"):
    """The pixels of every page image, each capped at ``PAGE_MAX_PIXELS``."""

    pixels: int


class Failed(msgspec.Struct, frozen=True, tag="failed"):
    """The request failed its job: an ``ExtractionError``'s code and reason."""

    code: str
    reason: str


Request = Open | Render | Measure
Reply = Opened | Rendered | Measured | Failed
# The reply each request expects (or ``Failed``).
ANSWERS: dict[type[Request], type[Reply]] = {Open: Opened, Render: Rendered, Measure: Measured}


def serve(
    sock: socket.socket, memory_limit_bytes: int, max_documents: int, page_hook: PageHook | None
) -> None:
    """Render process entry point: cap memory, then answer requests until the pool hangs up.

    The cap is what rendering may add to the process's address space as it starts (Python,
    PyMuPDF and Pillow themselves are not counted). After an allocation failure the process
    answers and exits: the pool starts a fresh one rather than trust a half-failed heap.
    """
    cap = _vsz_bytes() + memory_limit_bytes
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    # Ctrl-C reaches the whole process group: the worker then hands its jobs back, and its
    # render processes must not die under them first (which would fail those jobs instead).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _reuse_page_buffers()
    quiet_mupdf()
    documents = _Documents(max_documents)
    encoder = msgspec.msgpack.Encoder()
    decoder = msgspec.msgpack.Decoder(Request)
    # The pool gone mid-exchange (its worker killed) is a hang-up too: nobody is left to answer,
    # and a traceback per render process would only bury the worker's own log lines.
    with sock, sock.makefile("rb") as stream, contextlib.suppress(ConnectionError):
        while (frame := _read_frame(stream)) is not None:
            request = decoder.decode(frame)
            documents.forget(request.forget)
            reply = _answer(request, documents, page_hook)
            body = encoder.encode(reply)
            sock.sendall(len(body).to_bytes(HEADER, "big"))
            sock.sendall(body)
            if isinstance(reply, Failed) and reply.code == OUT_OF_MEMORY.code:
                return


def _answer(request: Request, documents: _Documents, page_hook: PageHook | None) -> Reply:
    try:
        if isinstance(request, Open):
            return Opened(documents.open(request.path)[1])
        doc, _ = documents.open(request.path)
        if isinstance(request, Measure):
            return Measured(page_pixels(doc, request.options))
        if page_hook is not None:
            page_hook(request.path, request.index)
        return Rendered(render_page(doc, request.index, request.options))
    except ExtractionError as exc:
        return Failed(exc.code, exc.reason)
    except MemoryError:
        return Failed(OUT_OF_MEMORY.code, OUT_OF_MEMORY.reason)
    except Exception as exc:
        if is_allocation_failure(exc):
            return Failed(OUT_OF_MEMORY.code, OUT_OF_MEMORY.reason)
        return Failed("PDF_CORRUPT", "PDF is corrupt or truncated")


class _Documents:
    """The documents a render process holds open, least recently used closed first."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._open: OrderedDict[str, tuple[pymupdf.Document, DocumentInfo]] = OrderedDict()

    def open(self, path: str) -> tuple[pymupdf.Document, DocumentInfo]:
        if path in self._open:
            self._open.move_to_end(path)
            return self._open[path]
        self._open[path] = opened = open_document(path)
        while len(self._open) > self._size:
            self._open.popitem(last=False)[1][0].close()
        return opened

    def forget(self, paths: Iterable[str]) -> None:
        for path in paths:
            if (opened := self._open.pop(path, None)) is not None:
                opened[0].close()


# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def _reuse_page_buffers() -> None:
    """Keep a page's buffers (pixmap, picture, encoder: 5-40 MB) in the heap for the next page.

    By default glibc maps each such buffer fresh and unmaps it when freed, and the kernel then
    zeroes every page of it again: about 12 ms of system time a page, 15% of rendering. Over
    32 MB (a huge page) buffers are still mapped and unmapped, and a heap that has more than
    64 MB free at its top gives it back, so a process's memory does not stay at its largest page.
    """
    with contextlib.suppress(OSError, AttributeError):  # not glibc: keep its defaults
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, 32 * 1024 * 1024)
        libc.mallopt(_M_TRIM_THRESHOLD, 64 * 1024 * 1024)


def _read_frame(stream: BinaryIO) -> bytes | None:
    header = stream.read(HEADER)
    if len(header) < HEADER:
        return None  # the pool closed its end
    return stream.read(int.from_bytes(header, "big"))


def _vsz_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[0]) * resource.getpagesize()
