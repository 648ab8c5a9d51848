"""The one classifier: each class of failure, produced for real where we can.

A mongod and a redis-server of this module's own (not the session's: these tests stop them)
give the real exceptions of a server shutting down, being killed, stepping down, pausing or
refusing writes, as the worker meets them.
"""

from __future__ import annotations

import asyncio
import signal

import pytest
import redis.asyncio as aioredis
from pymongo import AsyncMongoClient, InsertOne, MongoClient
from pymongo.errors import (
    BulkWriteError,
    DuplicateKeyError,
    InvalidOperation,
    OperationFailure,
    ServerSelectionTimeoutError,
)
from redis.exceptions import ReadOnlyError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from devstack.embedded import free_port, remove_tree, start_mongod, start_redis
from service.domain.errors import PageStoreError
from service.store.failure import is_transient
from service.store.page_images.gridfs_store import GridFSPageStore
from worker.rendering.page import ExtractionError


@pytest.fixture(scope="module")
def own_mongod(tmp_path_factory):
    dbpath = tmp_path_factory.mktemp("failure-mongod")
    servers = [start_mongod(dbpath, free_port())]

    def restart(sig: signal.Signals | None = None):
        """Stop the server (with ``sig``), wait for it to exit, start it again on its port."""
        server = servers[-1]
        if sig is not None:
            server.process.send_signal(sig)
        server.process.wait(30)
        servers.append(start_mongod(dbpath, server.port))
        return servers[-1]

    yield servers, restart
    servers[-1].stop()
    remove_tree(dbpath)


@pytest.fixture
async def mongo(own_mongod):
    servers, _ = own_mongod
    client = AsyncMongoClient(servers[-1].url, serverSelectionTimeoutMS=1000)
    yield client.pcj_failure.things
    await client.close()


@pytest.fixture
def own_redis(tmp_path):
    server = start_redis(tmp_path, free_port(), persistent=False)
    yield server
    server.stop()


async def _failure_of(operation, then):
    """Start ``operation`` looping, run ``then()`` once it is under way, return what it raised."""

    async def loop():
        while True:
            await operation()

    task = asyncio.create_task(loop())
    await asyncio.sleep(0.3)
    await asyncio.to_thread(then)
    with pytest.raises(Exception) as caught:
        await asyncio.wait_for(task, 30)
    return caught.value


def _bulk(mongo):
    return lambda: mongo.bulk_write([InsertOne({"text": "x" * 1000}) for _ in range(200)])


# --- transient: MongoDB ----------------------------------------------------------------------


async def test_mongod_shutting_down_mid_write_is_transient(mongo, own_mongod):
    _, restart = own_mongod

    # The failure of issue 12: a bulk write whose write concern failed with ShutdownInProgress.
    # A signal landing between two writes fails the next one otherwise (transient too): try
    # again for the write caught half-way.
    for _ in range(3):
        error = await _failure_of(_bulk(mongo), lambda: restart(signal.SIGTERM))
        assert is_transient(error), repr(error)
        if isinstance(error, BulkWriteError):
            break

    assert isinstance(error, BulkWriteError), repr(error)
    assert [e["code"] for e in error.details["writeConcernErrors"]] == [91]
    assert is_transient(error)


async def test_mongod_killed_mid_write_is_transient(mongo, own_mongod):
    _, restart = own_mongod

    error = await _failure_of(_bulk(mongo), lambda: restart(signal.SIGKILL))

    assert is_transient(error), repr(error)


async def test_page_image_put_while_mongod_restarts_is_transient(mongo, own_mongod):
    _, restart = own_mongod
    store = GridFSPageStore(mongo.database)
    image = b"\x00" * 150_000

    error = await _failure_of(
        lambda: store.put("chapters/c-1/page-1.webp", image, "image/webp"),
        lambda: restart(signal.SIGKILL),
    )

    assert isinstance(error, PageStoreError)  # the page store's own error, the driver's as cause
    assert is_transient(error), repr(error)


def test_page_store_refusing_for_good_is_permanent():
    refused = PageStoreError("S3 page store failed: PermissionDeniedError")

    assert not is_transient(refused)


def test_mongod_down_is_transient():
    # The synchronous client raises the same error; the async one, closed while its monitor
    # is still connecting, leaks that socket (a PyMongo 4.x quirk) and the warning fails the run.
    with (
        MongoClient(
            f"mongodb://127.0.0.1:{free_port()}/?directConnection=true",
            serverSelectionTimeoutMS=200,
        ) as client,
        pytest.raises(ServerSelectionTimeoutError) as caught,
    ):
        client.db.things.insert_one({"a": 1})

    assert is_transient(caught.value)


async def test_primary_stepping_down_is_transient(mongo):
    await mongo.database.client.admin.command({"replSetStepDown": 5, "force": True})
    try:
        with pytest.raises(Exception) as caught:
            await mongo.insert_one({"a": 1})
    finally:
        await _wait_writable(mongo)

    assert caught.value.details["code"] == 10107  # NotWritablePrimary
    assert is_transient(caught.value)


async def _wait_writable(mongo):
    for _ in range(600):
        if (await mongo.database.client.admin.command("hello")).get("isWritablePrimary"):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the server never became primary again after stepping down")


# --- transient: Redis ------------------------------------------------------------------------


async def test_redis_killed_mid_command_is_transient(own_redis):
    client = aioredis.Redis.from_url(own_redis.url, socket_timeout=2)

    error = await _failure_of(
        lambda: client.set("k", "v"), lambda: own_redis.process.send_signal(signal.SIGKILL)
    )
    await client.aclose()

    assert is_transient(error), repr(error)


async def test_redis_paused_past_the_socket_timeout_is_transient(own_redis):
    admin = aioredis.Redis.from_url(own_redis.url)
    client = aioredis.Redis.from_url(own_redis.url, socket_timeout=0.2)
    await client.ping()
    await admin.execute_command("CLIENT", "PAUSE", 1000, "ALL")

    with pytest.raises(RedisTimeoutError) as caught:
        await client.set("k", "v")
    await client.aclose()
    await admin.aclose()

    assert is_transient(caught.value)


async def test_redis_turned_replica_in_a_failover_is_transient(own_redis):
    client = aioredis.Redis.from_url(own_redis.url)
    await client.execute_command("REPLICAOF", "127.0.0.1", str(free_port()))

    with pytest.raises(ReadOnlyError) as caught:
        await client.set("k", "v")
    await client.aclose()

    assert is_transient(caught.value)


# --- transient: by construction, and through a cause ----------------------------------------


def test_bulk_write_whose_every_error_is_transient_is_transient():
    stepped_down = {"writeErrors": [{"index": 0, "code": 189}], "writeConcernErrors": []}

    assert is_transient(BulkWriteError(stepped_down))


def test_bulk_write_with_one_permanent_error_is_permanent():
    mixed = {"writeErrors": [{"index": 0, "code": 189}, {"index": 1, "code": 11000}]}

    assert not is_transient(BulkWriteError(mixed))


def _reset_then(error: Exception, *, explicit: bool) -> None:
    try:
        raise ConnectionResetError("peer reset")
    except ConnectionResetError as exc:
        if explicit:
            raise error from exc
        raise error  # noqa: B904 - the implicit context is the point


def test_error_raised_from_a_transient_one_is_transient():
    with pytest.raises(RuntimeError) as caught:
        _reset_then(RuntimeError("could not read the file"), explicit=True)

    assert is_transient(caught.value)


def test_a_bug_raised_while_handling_a_transient_error_is_permanent():
    with pytest.raises(KeyError) as caught:
        _reset_then(KeyError("bug"), explicit=False)

    assert not is_transient(caught.value)


# --- permanent -------------------------------------------------------------------------------


async def test_duplicate_key_is_permanent(mongo):
    await mongo.insert_one({"_id": "same"})
    with pytest.raises(DuplicateKeyError) as caught:
        await mongo.insert_one({"_id": "same"})

    assert not is_transient(caught.value)


async def test_a_bad_query_is_permanent(mongo):
    with pytest.raises(OperationFailure) as caught:
        await mongo.find_one({"a": {"$nope": 1}})

    assert not is_transient(caught.value)


async def test_a_closed_client_is_permanent(own_mongod):
    servers, _ = own_mongod
    client = AsyncMongoClient(servers[-1].url)
    await client.close()
    with pytest.raises(InvalidOperation) as caught:
        await client.db.things.find_one({})

    assert not is_transient(caught.value)


async def test_a_redis_command_on_the_wrong_type_is_permanent(own_redis):
    client = aioredis.Redis.from_url(own_redis.url)
    await client.set("k", "v")
    with pytest.raises(ResponseError) as caught:
        await client.lpush("k", "x")
    await client.aclose()

    assert not is_transient(caught.value)


@pytest.mark.parametrize(
    "error",
    [
        ExtractionError("PDF_CORRUPT", "PDF is corrupt or truncated"),
        ValueError("bad value"),
        KeyError("file_id"),
    ],
)
def test_errors_about_the_pdf_or_our_code_are_permanent(error):
    assert not is_transient(error)
