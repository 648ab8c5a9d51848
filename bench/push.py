"""Progress pushed over SSE against the same clients polling, on one API process.

Seeds 500 processing jobs (one user each) in an embedded mongod (replica set), serves the API
with granian (one process, uvloop) and, for each client count (1,000 then 5,000 by default):

1. **streams**: the clients open ``GET /api/v1/books/jobs/{id}/events`` spread evenly over the
   500 jobs, while a writer applies ``lifecycle.advance`` (the worker's own transition, through
   the store's ``apply``) to the jobs in turn at 200 updates/s. Each write carries its wall-clock
   time in the job's message, so a client knows how long the update took to reach it. Prints
   delivered events/s, write -> client latency p50/p99, the API's CPU per delivered event and
   its memory per open stream.
2. **polls**: the same clients poll ``GET /api/v1/books/jobs/{id}`` every 2 s (seed 002's
   frontend), with the same writer. Prints requests/s, latency and the API's CPU per request.

The API's CPU and memory come from /proc (granian's process tree). The clients are raw asyncio
sockets in two processes (``--client``), so their own cost stays out of the API's figures but
not out of the machine's: everything shares the cores. Loopback only; each window is bounded.
Prints figures; never passes or fails.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from devstack.api import api_command

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

JOBS = 500
LEASE = "bench-lease"
CLIENT_PROCESSES = 2
MARK = b'"message":"t='  # the writer's clock, in the message of every update
TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


# --- The clients (run as ``bench/push.py --client``) --------------------------------------------


class ClientStats:
    def __init__(self) -> None:
        self.open = 0
        self.events = 0
        self.requests = 0
        self.errors = 0
        self.latencies: list[float] = []
        self.measuring = False


def _request(path: str, token: str) -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {token}\r\n"
        "Accept: */*\r\n\r\n"
    ).encode()


def _stamp(block: bytes) -> float | None:
    at = block.find(MARK)
    if at < 0:
        return None
    start = at + len(MARK)
    return float(block[start : block.index(b'"', start)])


async def _stream(
    port: int, job_id: str, token: str, stats: ClientStats, held: asyncio.Event
) -> None:
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
        writer.write(_request(f"/api/v1/books/jobs/{job_id}/events", token))
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            stats.errors += 1
            return
        pending = b""
        opened = False
        while data := await reader.read(1 << 16):
            now = time.time()
            *blocks, pending = (pending + data).split(b"\n\n")
            for block in blocks:
                if b"event: progress" not in block:
                    continue
                if not opened:  # the current state: the stream is held
                    opened = True
                    stats.open += 1
                    held.set()
                    continue
                if stats.measuring:
                    stats.events += 1
                    stamp = _stamp(block)
                    if stamp is not None:
                        stats.latencies.append(now - stamp)
    except (OSError, asyncio.IncompleteReadError):
        stats.errors += 1
    finally:
        held.set()


async def _poll(port: int, job_id: str, token: str, stats: ClientStats, every_s: float) -> None:
    request = _request(f"/api/v1/books/jobs/{job_id}", token)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        stats.open += 1
        await asyncio.sleep(random.uniform(0, every_s))  # clients do not poll in lockstep
        while True:
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            if stats.measuring:
                stats.requests += 1
                stats.latencies.append(time.perf_counter() - started)
                if not head.startswith(b"HTTP/1.1 200"):
                    stats.errors += 1
            await asyncio.sleep(max(0.0, every_s - (time.perf_counter() - started)))
    except (OSError, asyncio.IncompleteReadError):
        stats.errors += 1


async def client_main() -> None:
    """Reads its orders on stdin: the config line, then ``go`` and ``stop``; answers on stdout."""
    config = json.loads(await asyncio.to_thread(sys.stdin.readline))
    stats = ClientStats()
    port, mode = config["port"], config["mode"]
    tasks = []
    gate = asyncio.Semaphore(100)  # connections opened at once

    async def start(job_id: str, token: str) -> None:
        async with gate:
            if mode == "stream":
                held = asyncio.Event()
                tasks.append(asyncio.create_task(_stream(port, job_id, token, stats, held)))
                await held.wait()
            else:
                tasks.append(asyncio.create_task(_poll(port, job_id, token, stats, 2.0)))

    await asyncio.gather(*(start(job_id, token) for job_id, token in config["targets"]))
    waited = 0.0
    while stats.open + stats.errors < len(config["targets"]):
        await asyncio.sleep(0.05)
        waited += 0.05
        if waited >= 60:
            print(f"client: {stats.open} open, {stats.errors} failed of {len(config['targets'])}",
                  file=sys.stderr, flush=True)  # fmt: skip
            waited = 0.0
    print(json.dumps({"open": stats.open, "errors": stats.errors}), flush=True)
    await asyncio.to_thread(sys.stdin.readline)  # go
    stats.measuring = True
    await asyncio.to_thread(sys.stdin.readline)  # stop
    stats.measuring = False
    print(json.dumps({
        "open": stats.open, "events": stats.events, "requests": stats.requests,
        "errors": stats.errors, "latencies": stats.latencies,
    }), flush=True)  # fmt: skip
    for task in tasks:
        task.cancel()


# --- Measuring the API ----------------------------------------------------------------------------


def _tree(root: int) -> list[int]:
    """``root`` and its descendants (granian's main process and its worker)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [root], [root]
    while frontier:
        frontier = [pid for pid, parent in parents.items() if parent in frontier]
        found += frontier
    return found


def cpu_seconds(root: int) -> float:
    total = 0
    for pid in _tree(root):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime + stime
    return total / TICKS


def rss_bytes(root: int) -> int:
    total = 0
    for pid in _tree(root):
        try:
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
        except OSError:
            continue
    return total


# --- The run ---------------------------------------------------------------------------------------


async def seed(url: str, db_name: str) -> list[tuple[str, str]]:
    from pymongo import AsyncMongoClient

    from bench.bed import PROJECT
    from devstack.token import emulator_token
    from service.domain.job import new_id, utcnow

    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url, tz_aware=True)
    now = utcnow()
    pairs, docs = [], []
    for index in range(JOBS):
        job_id, user = new_id(), f"bench-user-{index}"
        docs.append({
            "job_id": job_id, "user_id": user, "book_id": "b", "file_id": "f",
            "status": "processing", "progress": 50, "message": "Processed 1/2 pages...",
            "lease_id": LEASE, "heartbeat_at": now, "created_at": now, "updated_at": now,
            "version": 1,
        })  # fmt: skip
        pairs.append((job_id, emulator_token(user, PROJECT, lifetime_s=24 * 3600)))
    collection = client[db_name]["pdf_chapter_jobs"]
    await collection.insert_many(docs)
    await collection.create_index("job_id", unique=True)
    await client[db_name]["chapter_pages"].create_index([("job_id", 1), ("page_index", 1)])
    await client.close()
    return pairs


class Writer:
    """``lifecycle.advance`` applied through the store's ``apply``, to the jobs in turn."""

    def __init__(self, jobs: Any, job_ids: list[str], rate: float) -> None:
        self.jobs = jobs  # a JobStore
        self.job_ids = job_ids
        self.rate = rate
        self.writes = 0
        self.failures = 0

    async def run(self, stop: asyncio.Event) -> None:
        from service.domain import lifecycle
        from service.domain.job import utcnow

        gate = asyncio.Semaphore(64)
        started = time.perf_counter()

        async def write(index: int) -> None:
            async with gate:
                job_id = self.job_ids[index % len(self.job_ids)]
                message = f"t={time.time():.6f}"
                change = lifecycle.advance(
                    job_id, LEASE, 50, message, utcnow(), {"pages_processed": index}
                )
                if await self.jobs.apply(change) is None:
                    self.failures += 1
                self.writes += 1

        pending: set[asyncio.Task[None]] = set()
        index = 0
        while not stop.is_set():
            due = started + index / self.rate
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            task = asyncio.create_task(write(index))
            pending.add(task)
            task.add_done_callback(pending.discard)
            index += 1
        await asyncio.gather(*pending)


async def start_clients(port: int, mode: str, targets: list[tuple[str, str]]) -> list[Any]:
    clients = []
    share = -(-len(targets) // CLIENT_PROCESSES)
    for part in range(CLIENT_PROCESSES):
        process = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--client",
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, limit=1 << 26,
        )  # fmt: skip
        chunk = targets[part * share : (part + 1) * share]
        assert process.stdin is not None
        process.stdin.write(
            json.dumps({"port": port, "mode": mode, "targets": chunk}).encode() + b"\n"
        )
        await process.stdin.drain()
        clients.append(process)
    return clients


async def tell(clients: list[Any], line: bytes) -> None:
    for process in clients:
        process.stdin.write(line)
        await process.stdin.drain()


async def answers(clients: list[Any]) -> list[dict[str, Any]]:
    return [json.loads(await process.stdout.readline()) for process in clients]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else float("nan")


async def phase(
    jobs: Any,
    api_pid: int,
    port: int,
    mode: str,
    count: int,
    pairs: list[tuple[str, str]],
    args: Any,
) -> dict[str, Any]:
    targets = [pairs[index % len(pairs)] for index in range(count)]
    rss_before = rss_bytes(api_pid)
    opened_at = time.perf_counter()
    clients = await start_clients(port, mode, targets)
    ready = await answers(clients)
    open_s = time.perf_counter() - opened_at
    held = sum(r["open"] for r in ready)
    await asyncio.sleep(1.0)
    rss_open = rss_bytes(api_pid)
    writer, stop = Writer(jobs, [job for job, _ in pairs], args.rate), asyncio.Event()
    writing = asyncio.create_task(writer.run(stop))
    await asyncio.sleep(1.0)  # the writer up to speed
    await tell(clients, b"go\n")
    cpu0, writes0, t0 = cpu_seconds(api_pid), writer.writes, time.perf_counter()
    await asyncio.sleep(args.seconds)
    cpu1, writes1, t1 = cpu_seconds(api_pid), writer.writes, time.perf_counter()
    await tell(clients, b"stop\n")
    results = await answers(clients)
    stop.set()
    await writing
    for process in clients:
        await process.wait()
    elapsed = t1 - t0
    latencies = [x for r in results for x in r["latencies"]]
    events = sum(r["events"] for r in results)
    requests = sum(r["requests"] for r in results)
    cpu = cpu1 - cpu0
    return {
        "mode": mode, "clients": count, "held": held, "open_s": open_s,
        "errors": sum(r["errors"] for r in results),
        "writes_per_s": (writes1 - writes0) / elapsed,
        "events_per_s": events / elapsed, "requests_per_s": requests / elapsed,
        "p50_ms": percentile(latencies, 0.5) * 1000, "p99_ms": percentile(latencies, 0.99) * 1000,
        "cpu_pct": 100 * cpu / elapsed,
        "cpu_us_per_event": 1e6 * cpu / events if events else float("nan"),
        "cpu_us_per_request": 1e6 * cpu / requests if requests else float("nan"),
        "rss_per_stream_kb": (rss_open - rss_before) / count / 1024,
        "rss_mb": rss_open / 2**20,
    }  # fmt: skip


def serve(port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        api_command(port, backpressure=16384, log_level="warning"), env=env, cwd=ROOT
    )


def stop_api(api: subprocess.Popen[bytes]) -> None:
    """SIGTERM granian, and make sure its worker goes too (it outlives a killed main process)."""
    family = _tree(api.pid)
    api.terminate()
    with contextlib.suppress(subprocess.TimeoutExpired):
        api.wait(15)
    for pid in family:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    api.wait()


async def main(args: Any) -> None:
    from pymongo import AsyncMongoClient

    from bench.bed import bench_env, servers, wait_http
    from devstack.embedded import free_port
    from service.store.collections import Collections
    from service.store.jobs import JobStore

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # inherited by the API and clients
    db_name = "pcj_push_bench"
    with contextlib.ExitStack() as cleanup:  # last in, first out: the API, the bed, the limit
        cleanup.callback(resource.setrlimit, resource.RLIMIT_NOFILE, (soft, hard))
        bed = cleanup.enter_context(servers("pcj-push-"))
        pairs = await seed(bed.mongod.url, db_name)
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(bed.mongod.url, tz_aware=True)
        jobs = JobStore(Collections.of(client[db_name]))
        port = free_port()
        env = bench_env(
            bed, MONGODB_DB=db_name, LOG_LEVEL="WARNING",
            STREAM_MAX_PER_USER="100", STREAM_MAX_OPEN="10000",
        )  # fmt: skip
        api = serve(port, env)
        cleanup.callback(stop_api, api)
        wait_http(port, timeout=60)
        rows = []
        for mode in ("stream", "poll"):
            for count in args.clients:
                row = await phase(jobs, api.pid, port, mode, count, pairs, args)
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
        report(rows, args)
        await client.close()


def report(rows: list[dict[str, Any]], args: Any) -> None:
    print(f"\nOne API process (granian, uvloop), {JOBS} jobs, writer at {args.rate:.0f} updates/s, "
          f"{args.seconds:.0f} s windows, {os.cpu_count()} cores shared with mongod and the clients\n")  # fmt: skip
    print(
        "| streams | held | updates/s written | events/s delivered | p50 | p99 | API CPU | CPU per event | memory per stream |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if r["mode"] == "stream":
            print(f"| {r['clients']:,} | {r['held']:,} | {r['writes_per_s']:.0f} | {r['events_per_s']:,.0f} "
                  f"| {r['p50_ms']:.1f} ms | {r['p99_ms']:.1f} ms | {r['cpu_pct']:.0f}% "
                  f"| {r['cpu_us_per_event']:.0f} us | {r['rss_per_stream_kb']:.1f} KB |")  # fmt: skip
    print("\n| pollers (every 2 s) | requests/s | p50 | p99 | API CPU | CPU per request | errors |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        if r["mode"] == "poll":
            print(f"| {r['clients']:,} | {r['requests_per_s']:,.0f} | {r['p50_ms']:.1f} ms | {r['p99_ms']:.1f} ms "
                  f"| {r['cpu_pct']:.0f}% | {r['cpu_us_per_request']:.0f} us | {r['errors']} |")  # fmt: skip
    print()
    for count in args.clients:
        stream = next(r for r in rows if r["mode"] == "stream" and r["clients"] == count)
        poll = next(r for r in rows if r["mode"] == "poll" and r["clients"] == count)
        ratio = stream["cpu_us_per_event"] / poll["cpu_us_per_request"]
        print(f"{count:,} clients: CPU per delivered update / CPU per poll = {ratio:.2f} "
              f"(target <= 0.25); API CPU streaming {stream['cpu_pct']:.0f}% vs polling {poll['cpu_pct']:.0f}%")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--clients", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--rate", type=float, default=200.0, help="writer updates per second")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each window")
    arguments = parser.parse_args()
    import uvloop

    if arguments.client:
        uvloop.run(client_main())
    else:
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        uvloop.run(main(arguments))
