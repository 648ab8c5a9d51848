"""Instructions per polling request, counted by callgrind: the API in-process vs raw find_one.

bench/polling.py measures throughput, which drifts with this machine's speed by 10-20% from one
minute to the next. This counts what the CPU executes instead, which is the same from run to run
(valgrind's callgrind; `apt-get install valgrind`), so a change to the request path can be
judged by a few percent. The HTTP server (granian) and the kernel are not in the count: it is
the Python side of one ``GET /api/v1/books/jobs/{id}`` (Litestar, auth cache, MongoDB read,
encoding), called as an ASGI app, against one ``AsyncMongoClient.find_one`` of the same job.
Both are counted one request at a time (a poll's own cost: its read is never shared) and 32 at a
time (as under load, where polls in flight together share MongoDB queries, service/store/reader.py).

    python bench/instructions.py            # ~8 minutes
    python bench/instructions.py --requests 200

Each count is a whole process run under callgrind; the per-request figure is the difference
between a run with N requests and a run with none, divided by N. Never pass/fail.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from polling import seed  # noqa: E402

from bench.bed import PROJECT, bench_env, servers  # noqa: E402

DB = "pcj_instructions"
CONCURRENT = 32  # requests in flight at once in the -concurrent modes, as under bench/polling.py


async def _measured(mode: str, requests: int, mongodb_url: str, redis_url: str) -> None:
    """The process callgrind counts: set up, warm up, then ``requests`` of ``mode``."""
    from asgi_lifespan import LifespanManager
    from pymongo import AsyncMongoClient

    from devstack.token import emulator_token
    from service.api.app import create_app
    from service.settings import Settings

    client: AsyncMongoClient[dict] = AsyncMongoClient(mongodb_url, tz_aware=True)
    found = client[DB]["pdf_chapter_jobs"].find({}, {"job_id": 1, "user_id": 1}).limit(300)
    pairs = [(doc["job_id"], doc["user_id"]) async for doc in found]
    await client.close()
    tokens = {user: emulator_token(user, PROJECT) for _, user in pairs}
    settings = Settings(
        mongodb_url=mongodb_url,
        mongodb_db=DB,
        redis_url=redis_url,
        firebase_project_id=PROJECT,
        firebase_auth_emulator_host="127.0.0.1:9099",
    )
    app = create_app(settings)
    async with LifespanManager(app):
        statuses: list[int] = []

        async def receive() -> dict:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        async def poll(job_id: str, user: str) -> None:
            path = f"/api/v1/books/jobs/{job_id}"
            scope = {
                "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                "method": "GET", "scheme": "http", "path": path, "raw_path": path.encode(),
                "query_string": b"", "root_path": "", "client": ("127.0.0.1", 1234),
                "server": ("127.0.0.1", 80), "state": {},
                "headers": [(b"host", b"api"), (b"authorization", f"Bearer {tokens[user]}".encode())],
            }  # fmt: skip
            await app(scope, receive, send)  # type: ignore[arg-type]

        jobs = app.state.services.store.collections.db["pdf_chapter_jobs"]
        for job_id, user in pairs:  # warm: every token verified and cached, pools filled
            await poll(job_id, user)
            await jobs.find_one({"job_id": job_id}, {"_id": 0})
        at_once = CONCURRENT if mode.endswith("-concurrent") else 1
        for first in range(0, requests, at_once):
            numbers = range(first, min(first + at_once, requests))
            chosen = [pairs[number % len(pairs)] for number in numbers]
            if at_once == 1:  # awaited directly: no gather task in a lone request's count
                job_id, user = chosen[0]
                if mode == "api":
                    await poll(job_id, user)
                else:
                    await jobs.find_one({"job_id": job_id}, {"_id": 0})
            elif mode.startswith("api"):
                await asyncio.gather(*(poll(job_id, user) for job_id, user in chosen))
            else:
                await asyncio.gather(
                    *(jobs.find_one({"job_id": job_id}, {"_id": 0}) for job_id, _ in chosen)
                )
        if set(statuses) != {200}:
            raise SystemExit(f"unexpected statuses: {sorted(set(statuses))}")


def count(mode: str, requests: int, env: dict[str, str], workdir: Path) -> int:
    out = workdir / f"callgrind.{mode}.{requests}"
    subprocess.run(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable,
         __file__, "--child", mode, str(requests)],
        env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    totals = re.search(r"^(?:summary|totals): (\d+)", out.read_text(), re.MULTILINE)
    if totals is None:
        raise RuntimeError(f"no totals in {out}")
    return int(totals.group(1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        import uvloop

        mode, requests = args.child
        uvloop.run(
            _measured(mode, int(requests), os.environ["MONGODB_URL"], os.environ["REDIS_URL"])
        )
        return 0
    if not shutil.which("valgrind"):
        sys.exit("valgrind is needed: apt-get install valgrind")
    with servers("pcj-instructions-") as bed:
        env = bench_env(bed, MONGODB_DB=DB)
        subprocess.run([sys.executable, "-m", "indexes", "sync"], env=env, check=True, cwd=ROOT,
                       stdout=subprocess.DEVNULL)  # fmt: skip
        asyncio.run(seed(bed.mongod.url, DB, 2000, 50))
        base = count("none", 0, env, bed.tmp)
        print(f"instructions per request ({args.requests} requests, callgrind, in-process):")
        for label, suffix in (("one at a time", ""), (f"{CONCURRENT} at a time", "-concurrent")):
            api = (count("api" + suffix, args.requests, env, bed.tmp) - base) / args.requests
            raw = (count("raw" + suffix, args.requests, env, bed.tmp) - base) / args.requests
            print(f"  {label}:")
            print(f"    API GET /api/v1/books/jobs/{{id}} as an ASGI call: {api:,.0f}")
            print(f"    raw AsyncMongoClient.find_one:                   {raw:,.0f}")
            print(f"    ratio raw/API: {raw / api:.2f}")
        return 0


if __name__ == "__main__":
    sys.exit(main())
