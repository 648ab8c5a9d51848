"""The embedding process's side of its socket, and the messages both ends exchange.

Frames are a 4-byte big-endian length, then msgpack (msgspec). Vectors travel as the raw bytes of
a float32 matrix, not as lists: 384 floats are 1,536 bytes, and decoding them is one
``np.frombuffer``. Not pickle: a reply is decoded into these exact types, nothing more.

The process starts with ``serve``: it caps its address space, loads the model (checking the
file's sha256), says ``Ready`` (or ``Failed`` and exits), then answers each ``Embed`` with one
``Embedded`` or ``Failed``, in order, until the client hangs up. After running out of memory it
answers ``Failed`` and exits: the client starts a fresh process rather than trust a heap that
failed an allocation half-way.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import socket
from typing import BinaryIO, Literal

import msgspec

HEADER = 4
MAX_FRAME = 16 * 1024 * 1024
OUT_OF_MEMORY = "out_of_memory"
MODEL = "model"
ERROR = "error"


class Embed(msgspec.Struct, frozen=True, tag="embed"):
    """Embed ``texts`` as passages or queries; the reply is ``Embedded`` or ``Failed``."""

    texts: list[str]
    kind: Literal["passage", "query"]


class Ready(msgspec.Struct, frozen=True, tag="ready"):
    """The model is loaded: its name (``ModelSpec.name``) and dimensions."""

    model: str
    dimensions: int


class Embedded(msgspec.Struct, frozen=True, tag="embedded"):
    """``rows`` vectors, row after row, little-endian float32."""

    rows: int
    vectors: bytes


class Failed(msgspec.Struct, frozen=True, tag="failed"):
    """The request (or the start) failed: ``code`` is ``OUT_OF_MEMORY``, ``MODEL`` or ``ERROR``."""

    code: str
    reason: str


Reply = Ready | Embedded | Failed


def serve(
    sock: socket.socket,
    model_dir: str,
    threads: int,
    memory_limit_bytes: int,
    batch_tokens: int,
    nice: int = 0,
) -> None:
    """Embedding process entry point: cap memory, load the model, answer until hang-up.

    ``memory_limit_bytes`` caps the whole address space (RLIMIT_AS), not what is added to it: the
    process holds one model and nothing else, so its whole size is the figure to bound.
    """
    # Ctrl-C reaches the whole process group: the client stops this process itself, after its
    # own callers are answered.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if nice:
        # Below its host's priority: a worker's indexing must never slow its rendering, and an
        # API's query embedding is short enough not to notice.
        os.nice(nice)
    # tokenizers would batch-encode on a thread per core; the caller's ``threads`` is the bound.
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    encoder = msgspec.msgpack.Encoder()
    decoder = msgspec.msgpack.Decoder(Embed)

    def frame(reply: Reply) -> bytes:
        body = encoder.encode(reply)
        return len(body).to_bytes(HEADER, "big") + body

    # The client gone mid-exchange (its process killed) is a hang-up too: nobody is left to answer.
    with sock, sock.makefile("rb") as stream, contextlib.suppress(ConnectionError):
        size = _vsz_bytes()
        # Made before the cap: once memory has run out, even formatting a message can fail.
        too_small = frame(Failed(OUT_OF_MEMORY, _too_small(memory_limit_bytes, size)))
        ran_out = frame(Failed(OUT_OF_MEMORY, _ran_out(memory_limit_bytes)))
        if size >= memory_limit_bytes:
            sock.sendall(too_small)
            return
        resource.setrlimit(resource.RLIMIT_AS, (memory_limit_bytes, memory_limit_bytes))
        try:
            from service.retrieval.embedder import Embedder  # onnxruntime: in this process only
            from service.retrieval.model import load_model_spec

            spec = load_model_spec(model_dir)
            embedder = Embedder(spec, threads=threads, max_batch_tokens=batch_tokens)
        except MemoryError:
            sock.sendall(too_small)
            return
        except Exception as exc:  # the import itself can fail for memory (ImportError)
            sock.sendall(
                too_small if _is_allocation_failure(exc) else frame(Failed(MODEL, str(exc)))
            )
            return
        sock.sendall(frame(Ready(spec.name, spec.dimensions)))
        while (request_frame := _read_frame(stream)) is not None:
            request = decoder.decode(request_frame)
            try:
                vectors = embedder.embed(request.texts, request.kind)
                reply = frame(Embedded(len(vectors), vectors.astype("<f4", copy=False).tobytes()))
            except MemoryError:
                sock.sendall(ran_out)
                return
            except Exception as exc:  # onnxruntime's errors have no public base class
                if _is_allocation_failure(exc):
                    sock.sendall(ran_out)
                    return
                reply = frame(Failed(ERROR, f"embedding failed: {type(exc).__name__}: {exc}"))
            sock.sendall(reply)


def _ran_out(limit: int) -> str:
    return f"the embedding process ran out of memory (EMBEDDING_MEMORY_LIMIT_MB={limit >> 20})"


def _too_small(limit: int, size: int) -> str:
    return (
        f"EMBEDDING_MEMORY_LIMIT_MB={limit >> 20} is too small to load the model "
        f"(the embedding process mapped {size >> 20} MB before loading it)"
    )


def _is_allocation_failure(exc: BaseException) -> bool:
    # onnxruntime turns std::bad_alloc into RuntimeException("... bad allocation") or Fail, and
    # into ImportError("Exception caught: std::bad_alloc") when the cap is hit at its import; the
    # dynamic loader says "failed to map segment from shared object" when a library it loads
    # (tokenizers', onnxruntime's) no longer fits (mmap's ENOMEM: "cannot allocate memory").
    text = str(exc).lower()
    return any(sign in text for sign in ALLOCATION_FAILURE_SIGNS)


ALLOCATION_FAILURE_SIGNS = (
    "bad_alloc",
    "bad allocation",
    "failed to allocate",
    "failed to map segment",
    "cannot allocate memory",
)


def _read_frame(stream: BinaryIO) -> bytes | None:
    header = stream.read(HEADER)
    if len(header) < HEADER:
        return None  # the client closed its end
    size = int.from_bytes(header, "big")
    if size > MAX_FRAME:
        return None  # not our client: stop rather than allocate what it asks
    return stream.read(size)


def _vsz_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[0]) * resource.getpagesize()
