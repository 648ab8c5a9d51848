"""service/retrieval/process.py: a real embedding process, crashed, stopped, hung and capped.

No test asserts on time; waits have generous bounds so a broken client fails instead of hanging.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from service.retrieval.model import load_model_spec
from service.retrieval.process import (
    BATCH_TOKENS,
    EmbeddingBusy,
    EmbeddingClosed,
    EmbeddingCrashed,
    EmbeddingProcess,
    EmbeddingTimeout,
    EmbeddingUnavailable,
)
from tests.conftest import REPO_ROOT

WAIT_LIMIT_S = 120.0
TEXTS = ["The harbour froze in January.", "Ships waited for the thaw.", "Prices rose."]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0): it is gone when it is no longer our child to reap.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:  # reaped in between
        return False


def _open_descriptors() -> set[str]:
    descriptors = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(FileNotFoundError):  # listdir's own, closed by now
            descriptors.add(os.readlink(f"/proc/self/fd/{fd}"))
    return descriptors


async def _kill(pid: int) -> None:
    """SIGKILL, and wait until it is dead (not yet reaped: the client does that)."""
    os.kill(pid, signal.SIGKILL)
    await asyncio.to_thread(os.waitid, os.P_PID, pid, os.WEXITED | os.WNOWAIT)


@pytest.fixture
async def embedding(spec):
    process = EmbeddingProcess(spec, time_limit_s=30)
    yield process
    await process.aclose()


async def test_vectors_from_the_process_are_the_embedders(embedding, embedder):
    vectors = await asyncio.wait_for(embedding.embed(TEXTS, "passage"), WAIT_LIMIT_S)

    np.testing.assert_allclose(vectors, embedder.embed(TEXTS, "passage"), atol=1e-6)
    assert vectors.dtype == np.float32


async def test_long_calls_are_cut_into_requests_and_stay_in_order(spec, embedder):
    texts = [f"Item {i}: " + "lorem ipsum " * i for i in range(40)]
    async with EmbeddingProcess(spec, texts_per_request=7) as process:
        vectors = await asyncio.wait_for(process.embed(texts, "query"), WAIT_LIMIT_S)

    np.testing.assert_allclose(vectors, embedder.embed(texts, "query"), atol=1e-5)


async def test_concurrent_callers_each_get_their_own_vectors(embedding, embedder):
    calls = [embedding.embed([text], "query") for text in TEXTS]

    results = await asyncio.wait_for(asyncio.gather(*calls), WAIT_LIMIT_S)

    expected = embedder.embed(TEXTS, "query")
    for row, vectors in enumerate(results):
        np.testing.assert_allclose(vectors[0], expected[row], atol=1e-6)


async def test_a_killed_process_fails_its_request_and_the_next_one_works(embedding):
    await embedding.start()
    first = embedding.pid
    os.kill(first, signal.SIGSTOP)  # hold it mid-request, so the kill lands during the request
    request = asyncio.create_task(embedding.embed(TEXTS, "passage"))
    await asyncio.sleep(0.2)
    os.kill(first, signal.SIGKILL)

    with pytest.raises(EmbeddingCrashed, match="killed"):
        await asyncio.wait_for(request, WAIT_LIMIT_S)
    vectors = await asyncio.wait_for(embedding.embed(TEXTS, "passage"), WAIT_LIMIT_S)

    assert vectors.shape == (3, 384)
    assert embedding.pid != first
    assert not _alive(first)


async def test_a_process_killed_while_idle_is_replaced_without_failing_anyone(embedding):
    await embedding.start()
    first = embedding.pid
    await _kill(first)

    vectors = await asyncio.wait_for(embedding.embed(TEXTS, "query"), WAIT_LIMIT_S)

    assert vectors.shape == (3, 384)
    assert embedding.pid != first


async def test_a_hung_request_times_out_and_the_process_is_replaced(spec):
    async with EmbeddingProcess(spec, time_limit_s=2) as process:
        hung = process.pid
        os.kill(hung, signal.SIGSTOP)

        with pytest.raises(EmbeddingTimeout, match="over 2 s"):
            await asyncio.wait_for(process.embed(TEXTS, "passage"), WAIT_LIMIT_S)
        vectors = await asyncio.wait_for(process.embed(TEXTS[:1], "query"), WAIT_LIMIT_S)

        assert vectors.shape == (1, 384)
        assert not _alive(hung)


async def test_callers_beyond_the_queue_are_refused_at_once(spec):
    async with EmbeddingProcess(spec, max_queued=1) as process:
        os.kill(process.pid, signal.SIGSTOP)  # the first request stays in flight
        in_flight = asyncio.create_task(process.embed(["one"], "query"))
        await asyncio.sleep(0.2)
        queued = asyncio.create_task(process.embed(["two"], "query"))
        await asyncio.sleep(0)

        with pytest.raises(EmbeddingBusy, match="1 embedding requests are already waiting"):
            await process.embed(["three"], "query")
        os.kill(process.pid, signal.SIGCONT)
        results = await asyncio.wait_for(asyncio.gather(in_flight, queued), WAIT_LIMIT_S)

    assert [vectors.shape for vectors in results] == [(1, 384), (1, 384)]


async def test_a_caller_that_gives_up_does_not_disturb_the_next(embedding, embedder):
    await embedding.start()
    os.kill(embedding.pid, signal.SIGSTOP)
    abandoned = asyncio.create_task(embedding.embed(["abandoned"], "query"))
    await asyncio.sleep(0.2)
    abandoned.cancel()
    os.kill(embedding.pid, signal.SIGCONT)

    vectors = await asyncio.wait_for(embedding.embed(["kept"], "query"), WAIT_LIMIT_S)

    np.testing.assert_allclose(vectors, embedder.embed(["kept"], "query"), atol=1e-6)
    assert abandoned.cancelled()


def _children() -> set[int]:
    """This process's live children (the session's app and indexer have their own)."""
    return {child.pid for child in multiprocessing.active_children() if child.pid is not None}


async def test_aclose_leaves_no_process_and_no_socket(spec):
    children = _children()
    descriptors = _open_descriptors()
    process = EmbeddingProcess(spec)
    await process.embed(TEXTS, "passage")
    await _kill(process.pid)  # and one replaced on the way
    await process.embed(TEXTS, "passage")
    pid = process.pid

    await process.aclose()

    assert not _alive(pid)
    assert _children() == children
    # None added: the process's own may have closed others (a collected client, a pool's socket).
    assert _open_descriptors() - descriptors == set()
    with pytest.raises(EmbeddingClosed):
        await process.embed(TEXTS, "passage")


async def test_aclose_fails_the_waiting_callers(spec):
    children = _children()
    process = EmbeddingProcess(spec)
    await process.start()
    os.kill(process.pid, signal.SIGSTOP)
    waiting = [asyncio.create_task(process.embed([text], "query")) for text in TEXTS]
    await asyncio.sleep(0.2)

    await process.aclose()

    for task in waiting:
        with pytest.raises(EmbeddingClosed):
            await task
    assert _children() == children


async def test_a_memory_cap_below_the_models_size_is_refused_clearly(spec):
    children = _children()
    process = EmbeddingProcess(spec, memory_limit_bytes=200 * 1024 * 1024)
    try:
        with pytest.raises(EmbeddingUnavailable, match="EMBEDDING_MEMORY_LIMIT_MB=200") as first:
            await asyncio.wait_for(process.embed(TEXTS, "query"), WAIT_LIMIT_S)
        assert first.value.permanent
        # Not retried per request: the same answer at once, no process started.
        with pytest.raises(EmbeddingUnavailable):
            await process.embed(TEXTS, "query")
        assert process.pid is None
    finally:
        await process.aclose()
    assert _children() == children


async def test_a_model_file_changed_after_the_spec_was_read_is_refused(model_dir):
    directory = model_dir()
    spec = load_model_spec(str(directory))
    config = json.loads((directory / "embedding.json").read_text())
    (directory / "embedding.json").write_text(json.dumps({**config, "sha256": "1" * 64}))

    process = EmbeddingProcess(spec)
    try:
        with pytest.raises(EmbeddingUnavailable, match="sha256") as refused:
            await asyncio.wait_for(process.start(), WAIT_LIMIT_S)
    finally:
        await process.aclose()
    assert refused.value.permanent


def test_the_clients_batch_size_is_the_embedders():
    from service.retrieval.embedder import MAX_BATCH_TOKENS

    assert BATCH_TOKENS == MAX_BATCH_TOKENS


def test_the_client_side_never_loads_onnxruntime():
    probe = (
        "import json, sys, service.retrieval.process, service.retrieval.chunking, "
        "service.retrieval.ranking, service.retrieval.tokens;"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'onnxruntime')))"
    )

    loaded = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, check=True, timeout=60
    )

    assert json.loads(loaded.stdout) == []


@pytest.mark.parametrize(
    "error",
    [
        ImportError("Exception caught: std::bad_alloc"),
        RuntimeError("onnxruntime: bad allocation"),
        # The dynamic loader's words when a library no longer fits under the cap (seen on CI).
        ImportError(".venv/lib/tokenizers.abi3.so: failed to map segment from shared object"),
        OSError("libonnxruntime.so: cannot allocate memory"),
    ],
)
def test_running_out_of_address_space_is_told_from_a_broken_model(error):
    from service.retrieval.protocol import _is_allocation_failure

    assert _is_allocation_failure(error)
    assert not _is_allocation_failure(ValueError("model.onnx: invalid protobuf"))
