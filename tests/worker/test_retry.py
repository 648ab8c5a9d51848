"""Waiting out an outage: a MongoDB call retried until a real mongod is back, and what it logs
and counts on the way."""

from __future__ import annotations

import asyncio
import logging
import signal

import pytest
from pymongo import AsyncMongoClient, MongoClient
from pymongo.errors import ServerSelectionTimeoutError

from devstack.embedded import free_port, remove_tree, start_mongod
from service import backoff
from worker import metrics
from worker.dependency import Dependency
from worker.run.patience import Patience


def _gauge(name: str) -> float:
    return metrics.DEPENDENCY_UP.labels(dependency=name)._value.get()


def _outages(name: str) -> float:
    return metrics.OUTAGES.labels(dependency=name)._value.get()


async def test_a_write_waits_out_a_mongod_restart(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    dbpath = tmp_path / "mongod"
    server = start_mongod(dbpath, free_port())
    client = AsyncMongoClient(server.url, serverSelectionTimeoutMS=300)
    dependency = Dependency("mongodb-retry-test")
    patience = Patience(dependency=dependency)
    seen_down = []
    try:
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(10)

        async def insert():
            seen_down.append(_gauge("mongodb-retry-test"))
            return await client.db.things.insert_one({"_id": "page-1"})

        write = asyncio.create_task(patience.call(insert, "write a page"))
        await asyncio.sleep(1.0)  # the write is failing and waiting meanwhile
        server = await asyncio.to_thread(start_mongod, dbpath, server.port)
        await asyncio.wait_for(write, 60)

        stored = await client.db.things.find_one({"_id": "page-1"})
    finally:
        await client.close()
        server.stop()
        remove_tree(dbpath)

    assert stored == {"_id": "page-1"}
    assert patience.waited_s > 0
    assert 0 in seen_down  # the gauge showed the outage while the write waited
    assert _gauge("mongodb-retry-test") == 1
    assert _outages("mongodb-retry-test") == 1
    messages = [r.getMessage() for r in caplog.records]
    assert any("mongodb-retry-test unreachable" in m for m in messages)
    assert any("mongodb-retry-test is back after" in m for m in messages)
    assert any(m.startswith("write a page: done after") for m in messages)


async def test_patience_gives_up_with_the_transient_error():
    # A synchronous client in a thread: closing an async one while its monitor still connects
    # to a dead port leaks a socket (a PyMongo 4.x quirk).
    client = MongoClient(
        f"mongodb://127.0.0.1:{free_port()}/?directConnection=true", serverSelectionTimeoutMS=100
    )
    patience = Patience(give_up_after_s=0.3, dependency=Dependency("mongodb-give-up-test"))
    try:
        with pytest.raises(ServerSelectionTimeoutError):
            await patience.call(lambda: asyncio.to_thread(client.db.things.find_one, {}), "read")
    finally:
        client.close()

    assert _gauge("mongodb-give-up-test") == 0


async def test_a_permanent_error_is_raised_at_once():
    calls = []

    async def bug():
        calls.append(1)
        raise KeyError("file_id")

    patience = Patience(dependency=Dependency("mongodb-bug-test"))
    with pytest.raises(KeyError):
        await patience.call(bug, "read")

    assert calls == [1]
    assert patience.waited_s == 0
    assert _gauge("mongodb-bug-test") == 1


def test_dependency_counts_an_outage_once_and_knows_how_long_it_has_been_back():
    now = [100.0]
    dependency = Dependency("clock-test", clock=lambda: now[0])
    error = ConnectionRefusedError("refused")

    up_before = dependency.up_for_s()
    dependency.down(error)
    now[0] = 105.0
    dependency.down(error)  # the same outage, seen again
    up_during = dependency.up_for_s()
    dependency.up()
    now[0] = 107.5

    assert up_before == float("inf")  # no outage seen since the process started
    assert up_during == 0
    assert dependency.up_for_s() == 2.5
    assert _outages("clock-test") == 1
    assert _gauge("clock-test") == 1


async def test_transient_failures_are_retried_on_the_backoff_policy():
    failures = [ConnectionResetError("reset")] * 4
    calls = []

    async def flaky():
        calls.append(1)
        if failures:
            raise failures.pop()
        return "stored"

    patience = Patience(dependency=Dependency("mongodb-flaky-test"))
    with backoff.instant():  # the policy's delays, counted but not waited
        result = await patience.call(flaky, "write a page")

    assert result == "stored"
    assert len(calls) == 5
    assert patience.waited_s == pytest.approx(0.1 + 0.2 + 0.4 + 0.8)
    assert _gauge("mongodb-flaky-test") == 1
