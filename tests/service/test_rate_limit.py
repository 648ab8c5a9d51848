"""service/limits/rate_limit.py on a real redis-server: the moving window, and every way Redis fails."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading

import pytest
from redis.asyncio import Redis

from devstack.embedded import free_port, start_redis
from service.limits.rate_limit import RateLimited, RateLimiter

KEY = "list_chunks:alice"


@pytest.fixture
async def redis(redis_server):
    client = Redis.from_url(redis_server.url)
    await client.flushdb()
    yield client
    await client.flushdb()
    await client.aclose()


async def test_requests_older_than_the_window_no_longer_count(redis):
    limiter = RateLimiter(redis, window_s=1)
    for _ in range(3):
        await limiter.hit(KEY, 3)
    with pytest.raises(RateLimited):
        await limiter.hit(KEY, 3)

    await asyncio.sleep(1.3)  # the three hits leave the one-second window
    quota = await limiter.hit(KEY, 3)

    assert quota is not None
    assert quota.remaining == 2
    assert await limiter.count(KEY, 3) == 1


async def test_a_full_window_refuses_and_does_not_count_the_refused(redis):
    limiter = RateLimiter(redis)
    for _ in range(100):
        await limiter.hit(KEY, 100)

    with pytest.raises(RateLimited) as refused:
        await limiter.hit(KEY, 100, "job creations")

    headers = refused.value.headers
    assert headers["RateLimit-Remaining"] == "0"
    assert 1 <= int(headers["Retry-After"]) <= 60
    assert refused.value.detail == "Rate limit exceeded: 100 job creations per 60 seconds"
    assert await limiter.count(KEY, 100) == 100  # a refused request is not counted


async def test_each_key_has_its_own_window(redis):
    limiter = RateLimiter(redis)
    await limiter.hit(KEY, 1)

    quota = await limiter.hit("list_chunks:bob", 1)

    assert quota is not None
    with pytest.raises(RateLimited):
        await limiter.hit(KEY, 1)


class Blackhole:
    """A TCP server that accepts connections and never answers; counts the bytes it gets.

    Closing it stops accepting (a shutdown wakes the blocked accept), then closes every
    connection it accepted and waits for its threads: nothing is left for the garbage collector
    to find (a socket it closes later warns in whichever test is running then).
    """

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.received = 0
        self._lock = threading.Lock()
        self._closed = False
        self._connections: list[socket.socket] = []
        self._threads: list[threading.Thread] = [threading.Thread(target=self._serve, daemon=True)]
        self._threads[0].start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with self._lock:
                if self._closed:  # accepted as close() began: close it here
                    conn.close()
                    return
                self._connections.append(conn)
                drain = threading.Thread(target=self._drain, args=(conn,), daemon=True)
                self._threads.append(drain)
            drain.start()

    def _drain(self, conn: socket.socket) -> None:
        while True:
            try:
                data = conn.recv(65536)
            except OSError:
                return
            if not data:
                return
            self.received += len(data)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            connections, threads = list(self._connections), list(self._threads)
        with contextlib.suppress(OSError):
            self.server.shutdown(socket.SHUT_RDWR)
        self.server.close()
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()
        for thread in threads:
            thread.join(timeout=5)


async def test_a_hung_redis_is_not_asked_again_for_a_while():
    hole = Blackhole()
    redis = Redis.from_url(f"redis://127.0.0.1:{hole.port}/0", socket_timeout=30)
    clock = [1000.0]
    limiter = RateLimiter(redis, timeout_s=0.2, pause_s=5, clock=lambda: clock[0])
    try:
        first = await limiter.hit(KEY, 100)  # waits at most timeout_s, then lets it through
        sent = hole.received
        second = await limiter.hit(KEY, 100)
        clock[0] += 6
        third = await limiter.hit(KEY, 100)
    finally:
        await redis.aclose()
        hole.close()

    assert (first, second, third) == (None, None, None)
    assert sent > 0
    assert hole.received > sent  # asked again only after the pause


async def test_a_read_only_redis_lets_requests_through(tmp_path):
    replica = start_redis(tmp_path, free_port(), persistent=False)
    redis = Redis.from_url(replica.url)
    try:
        await redis.execute_command("REPLICAOF", "127.0.0.1", str(free_port()))

        quota = await RateLimiter(redis).hit(KEY, 100)
    finally:
        await redis.aclose()
        replica.stop()

    assert quota is None


async def test_chunk_list_survives_a_read_only_redis(
    tmp_path, other_app, settings, auth_headers, job_factory
):
    job = await job_factory()
    replica = start_redis(tmp_path, free_port(), persistent=False)
    try:
        admin = Redis.from_url(replica.url)
        await admin.execute_command("REPLICAOF", "127.0.0.1", str(free_port()))
        await admin.aclose()
        async with other_app(settings.model_copy(update={"redis_url": replica.url})) as client:
            response = await client.get(
                f"/api/v1/jobs/{job.job_id}/chunks", headers=auth_headers("alice")
            )
    finally:
        replica.stop()

    assert response.status_code == 200
    assert response.json()["success"] is True
    assert "ratelimit-limit" not in response.headers
