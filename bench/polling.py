"""Polling throughput: GET /api/v1/books/jobs/{id} under granian vs raw find_one.

Seeds 10,000 jobs in an embedded mongod, serves the API with granian (one process), loads it
with wrk (32 connections, 10 s, a valid token per request), and measures raw
``AsyncMongoClient.find_one`` with 32 concurrent tasks for 10 s in the same run, on uvloop like
the API. The API is measured twice: as deployed, where the polls in flight together share
MongoDB queries (service/store/reader.py), and with ``POLL_READ_BATCH=1``, one ``find_one`` per poll.
The machine's speed drifts by 10-20% from minute to minute here, so the three measurements are
interleaved over ``--rounds`` rounds and each ratio is the median of the rounds' ratios. Prints
req/s, p50/p99 latency, polls per MongoDB query and the ratio API/raw. Needs `wrk`
(apt-get install wrk). Never pass/fail.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import uvloop
from pymongo import AsyncMongoClient

from devstack.api import api_command
from devstack.embedded import free_port, stop
from devstack.token import emulator_token
from service.domain.job import utcnow

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bed import DB, PROJECT, bench_env, servers, wait_http  # noqa: E402

# The API as deployed (polls in flight together share queries), and one find_one per poll.
CONFIGURATIONS = {
    "coalesced reads (default)": "100",
    "one find_one per poll (POLL_READ_BATCH=1)": "1",
}


async def seed(url: str, db: str, jobs: int, users: int) -> list[tuple[str, str]]:
    client: AsyncMongoClient[dict] = AsyncMongoClient(url, tz_aware=True)
    now = utcnow()
    docs, pairs = [], []
    for i in range(jobs):
        user = f"user-{i % users}"
        job_id = f"{random.getrandbits(128):032x}"
        job_id = f"{job_id[:8]}-{job_id[8:12]}-4{job_id[13:16]}-a{job_id[17:20]}-{job_id[20:32]}"
        docs.append({
            "job_id": job_id, "user_id": user, "book_id": "b", "file_id": "f",
            "status": "processing", "progress": 45, "message": "Processed 120/283 pages...",
            "created_at": now, "updated_at": now, "version": 7,
        })  # fmt: skip
        pairs.append((job_id, user))
    await client[db]["pdf_chapter_jobs"].insert_many(docs)
    await client.close()
    return pairs


async def raw_find_one(url: str, db: str, ids: list[str], concurrency: int, seconds: float):
    client: AsyncMongoClient[dict] = AsyncMongoClient(url, tz_aware=True, maxPoolSize=concurrency)
    collection = client[db]["pdf_chapter_jobs"]
    await collection.find_one({})
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def loop() -> None:
        while (start := time.perf_counter()) < deadline:
            await collection.find_one({"job_id": random.choice(ids)}, {"_id": 0})
            latencies.append(time.perf_counter() - start)

    began = time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(concurrency)))
    elapsed = time.perf_counter() - began
    await client.close()
    latencies.sort()
    return (
        len(latencies) / elapsed,
        latencies[len(latencies) // 2] * 1000,
        latencies[int(len(latencies) * 0.99)] * 1000,
    )


LUA = """
local items = {%s}
math.randomseed(42)
request = function()
  local item = items[math.random(#items)]
  return wrk.format("GET", "/api/v1/books/jobs/" .. item[1], {["Authorization"] = "Bearer " .. item[2]})
end
done = function(summary, latency, requests)
  io.write(string.format("LATENCY p50_us=%%d p99_us=%%d\\n", latency:percentile(50), latency:percentile(99)))
end
"""


def reads_per_query(port: int) -> float:
    """Polls per MongoDB query so far, from the API's /metrics."""
    import urllib.request

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    counts = dict(re.findall(r"^(pcj_job_read(?:s|_queries)_total) ([\d.e+]+)$", text, re.M))
    return float(counts["pcj_job_reads_total"]) / max(
        float(counts["pcj_job_read_queries_total"]), 1
    )


def load_api(env: dict[str, str], port: int, lua: Path, args: argparse.Namespace):
    """Serve the API under granian and load it with wrk.

    Returns (req/s, p50 ms, p99 ms, non-2xx, polls per MongoDB query)."""
    api = subprocess.Popen(api_command(port, log_level="warning"), env=env, cwd=ROOT)
    try:
        wait_http(port)
        target = f"http://127.0.0.1:{port}"
        # Warm-up: verify each token once, fill the connection pool.
        subprocess.run(["wrk", "-t1", f"-c{args.connections}", "-d2s", "-s", str(lua), target],
                       capture_output=True, check=True)  # fmt: skip
        out = subprocess.run(
            ["wrk", "-t1", f"-c{args.connections}", f"-d{args.seconds}s", "-s", str(lua), target],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        per_query = reads_per_query(port)
    finally:
        stop(api)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    lat = re.search(r"LATENCY p50_us=(\d+) p99_us=(\d+)", out)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    p50, p99 = int(lat.group(1)) / 1000, int(lat.group(2)) / 1000  # type: ignore[union-attr]
    return rps, p50, p99, int(bad.group(1)) if bad else 0, per_query


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is needed: apt-get install wrk")

    with servers("pcj-bench-") as bed:
        env = bench_env(bed, PORT=str(free_port()))
        subprocess.run([sys.executable, "-m", "indexes", "sync"], env=env, check=True, cwd=ROOT,
                       stdout=subprocess.DEVNULL)  # fmt: skip
        pairs = asyncio.run(seed(bed.mongod.url, DB, args.jobs, args.users))
        tokens = {user: emulator_token(user, PROJECT) for user in {u for _, u in pairs}}
        port = int(env["PORT"])
        sample = random.sample(pairs, min(2000, len(pairs)))
        lua = bed.tmp / "poll.lua"
        lua.write_text(LUA % ",".join(f'{{"{j}","{tokens[u]}"}}' for j, u in sample))
        rounds: list[dict[str, tuple[float, ...]]] = []
        for _ in range(args.rounds):
            measured: dict[str, tuple[float, ...]] = {}
            for label, batch in CONFIGURATIONS.items():
                measured[label] = load_api({**env, "POLL_READ_BATCH": batch}, port, lua, args)
            measured["raw"] = uvloop.run(
                raw_find_one(
                    bed.mongod.url, DB, [j for j, _ in pairs], args.connections, args.seconds
                )
            )
            rounds.append(measured)
        print(
            f"jobs seeded: {args.jobs}, connections/tasks: {args.connections}, "
            f"{args.seconds}s each, {args.rounds} interleaved rounds"
        )
        for number, measured in enumerate(rounds, start=1):
            raw_rps, raw_p50, raw_p99 = measured["raw"]
            print(f"round {number}: raw AsyncMongoClient.find_one, {args.connections} tasks "
                  f"(uvloop): {raw_rps:,.0f} ops/s, p50 {raw_p50:.2f} ms, p99 {raw_p99:.2f} ms")  # fmt: skip
            for label in CONFIGURATIONS:
                api_rps, p50, p99, bad, per_query = measured[label]
                print(f"round {number}: API GET /api/v1/books/jobs/{{id}} (granian 1 process, "
                      f"wrk), {label}: {api_rps:,.0f} req/s, p50 {p50:.2f} ms, p99 {p99:.2f} ms, "
                      f"non-2xx {bad:.0f}, {per_query:.1f} polls per query, "
                      f"ratio {api_rps / raw_rps:.2f}")  # fmt: skip
        for label in CONFIGURATIONS:
            ratios = sorted(m[label][0] / m["raw"][0] for m in rounds)
            print(f"ratio API/raw, {label}: median {statistics.median(ratios):.2f} "
                  f"(rounds: {', '.join(f'{r:.2f}' for r in ratios)}; target >= 0.5)")  # fmt: skip
        return 0


if __name__ == "__main__":
    sys.exit(main())
