"""The faults of tests/chaos under a longer load: per fault, the time to recover and the jobs
lost, duplicated or stuck (all must be 0).

Each fault gets a deployment of its own (tests/chaos/stack.py: mongod, redis-server, the API
under granian, two workers), JOBS jobs of PAGES text-heavy pages submitted through the API and
polled every 200 ms like a browser, and the fault once some jobs are being extracted and others
wait. The settings are the chaos tests' small ones (STALE_AFTER_S 3, SWEEP_INTERVAL_S 1,
PENDING_GRACE_S 2, HEARTBEAT_INTERVAL_S 0.5); the recovery bounds scale with them.

What "recover" means, per fault:
- mongod killed, restarted: from mongod accepting writes again to the first page written after.
- redis killed, restarted empty: from Redis back to every job created during the outage (its
  doorbell lost) being rung again; bounded by PENDING_GRACE_S + SWEEP_INTERVAL_S.
- worker SIGKILLed: from the kill to its job being handed back (released and rung); bounded by
  WORKER_STALE_S + up to three SWEEP_INTERVAL_S (the sweep lock may have been the dead one's).
- worker SIGKILLed and started again a second later (as ``make run`` restarts it): from the kill
  to its job claimed again (the new worker hands back its predecessor's job at start-up, first in
  the queue). This row keeps make run's staleness settings (STALE_AFTER_S 60, WORKER_STALE_S
  10), so that nothing but the restart can hand the job back sooner.
- worker SIGSTOPped: from the stop to its jobs being handed back (same bound as SIGKILLed).
When the job then runs depends on free job slots, not on the fault: "load" gives the whole run.
- API restarted (SIGTERM, drain, start): from SIGTERM to the API answering again.
- deploy storm: one worker stopped (SIGTERM) and started again STORM_RESTARTS times, each time
  once it has stored pages since its start; the figure is the pages all workers rendered over
  the pages of the jobs (1.00: no page rendered twice).
- primary killed (MongoDB as a three-member replica set): from the SIGKILL of the primary to the
  next page stored; the member is started again once a page was.

Prints figures; never passes or fails on time. Usage: ``python bench/chaos.py [--jobs N]
[--pages N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.chaos.stack import Stack  # noqa: E402
from tests.support.pdfs import book_pdf  # noqa: E402


@dataclass
class Load:
    """The jobs a fault runs under, and their pollers."""

    ids: list[str] = field(default_factory=list)
    pollers: list[asyncio.Task[None]] = field(default_factory=list)


# A fault returns its figure for the "recovered in" column: seconds, or a phrase of its own.
Fault = Callable[[Stack, Load], Awaitable[float | str]]
STORM_RESTARTS = 4


async def pages_written(stack: Stack) -> int:
    return int(await stack.db.chapter_pages.estimated_document_count())


async def rung_since(stack: Stack, job_ids: list[str], since: datetime) -> bool:
    """Every job is running or done, or its doorbell rang after ``since``."""
    docs = await stack.db.pdf_chapter_jobs.find(
        {"job_id": {"$in": job_ids}}, {"status": 1, "rung_at": 1}
    ).to_list()
    return all(d["status"] != "pending" or d["rung_at"] > since for d in docs)


async def handed_back(stack: Stack, job_ids: list[str]) -> bool:
    """Every job was taken from the worker that held it (released, or claimed again)."""
    docs = await stack.db.pdf_chapter_jobs.find(
        {"job_id": {"$in": job_ids}}, {"status": 1, "attempts": 1}
    ).to_list()
    return all(d["status"] != "processing" or d.get("attempts", 0) >= 2 for d in docs)


async def mongod_killed(stack: Stack, load: Load) -> float:
    stack.kill_mongod()
    await asyncio.sleep(3.0)  # longer than STALE_AFTER_S
    await asyncio.to_thread(stack.restart_mongod)
    back = time.monotonic()
    before = await pages_written(stack)

    async def resumed() -> bool:
        return await pages_written(stack) > before

    await stack.until(resumed, 120, "pages written again")
    return time.monotonic() - back


async def redis_killed(stack: Stack, load: Load) -> float:
    stack.kill_redis()
    await asyncio.sleep(1.0)
    later = await submit(stack, load, 3)
    await asyncio.sleep(2.0)
    await asyncio.to_thread(stack.restart_redis)
    back, back_at = time.monotonic(), datetime.now(UTC)
    await stack.until(lambda: rung_since(stack, later, back_at), 120, "the lost doorbells rung")
    return time.monotonic() - back


async def worker_killed(stack: Stack, load: Load) -> float:
    victim, held = await stopped_holder(stack, load.ids)
    victim.kill(signal.SIGKILL)
    killed = time.monotonic()
    await stack.until(lambda: handed_back(stack, held), 120, "the job handed back")
    return time.monotonic() - killed


async def worker_killed_and_restarted(stack: Stack, load: Load) -> float:
    victim, held = await stopped_holder(stack, load.ids)
    victim.kill(signal.SIGKILL)
    killed = time.monotonic()
    await asyncio.sleep(1.0)  # make run's supervisor restarts a crashed worker after 1 s
    victim.start()
    await stack.until(lambda: claimed_again(stack, held), 120, "the job claimed again")
    return time.monotonic() - killed


async def claimed_again(stack: Stack, job_ids: list[str]) -> bool:
    """Every job was claimed by another run (or is done)."""
    docs = await stack.db.pdf_chapter_jobs.find(
        {"job_id": {"$in": job_ids}}, {"status": 1, "attempts": 1}
    ).to_list()
    return all(d["status"] == "completed" or d.get("attempts", 0) >= 2 for d in docs)


async def deploy_storm(stack: Stack, load: Load) -> str:
    worker = stack.workers[0]
    for _ in range(STORM_RESTARTS):
        stored = await pages_written(stack)

        async def stored_more(since: int = stored) -> bool:
            return await pages_written(stack) > since

        await stack.until(stored_more, 120, "the restarted worker to store pages")
        await asyncio.to_thread(worker.stop)
        worker.start()
    return f"{STORM_RESTARTS} restarts"


async def primary_killed(stack: Stack, load: Load) -> float:
    before = await pages_written(stack)
    killed_member = await stack.kill_primary()
    killed = time.monotonic()

    async def stored() -> bool:
        return await pages_written(stack) > before

    await stack.until(stored, 120, "a page stored after the failover")
    took = time.monotonic() - killed
    await stack.restart_member(killed_member)
    return took


async def worker_stalled(stack: Stack, load: Load) -> float:
    victim, held = await stopped_holder(stack, load.ids)
    stopped = time.monotonic()
    await stack.until(lambda: handed_back(stack, held), 120, "the jobs handed back")
    took = time.monotonic() - stopped
    await stack.until(lambda: all_completed(stack, held), 300, "the other worker to complete them")
    victim.send(signal.SIGCONT)
    return took


async def api_restarted(stack: Stack, load: Load) -> float:
    started = time.monotonic()
    await stack.restart_api()
    return time.monotonic() - started


async def stopped_holder(stack: Stack, ids: list[str]) -> tuple[Any, list[str]]:
    """A worker SIGSTOPped while it holds running jobs, and those jobs: read once it has
    stopped, so that none of them completes in between."""
    for worker in stack.workers:
        await stack.pause(worker)
        docs = {d["job_id"]: d for d in await stack.jobs(ids)}
        held = [j for j in set(stack.claims(worker)) if docs[j]["status"] == "processing"]
        if held:
            return worker, held
        worker.send(signal.SIGCONT)
    raise RuntimeError("no worker holds a running job")


async def all_completed(stack: Stack, job_ids: list[str]) -> bool:
    return all(d["status"] == "completed" for d in await stack.jobs(job_ids))


BOOK: bytes = b""


async def submit(stack: Stack, load: Load, count: int) -> list[str]:
    """Create ``count`` more jobs through the API and poll each."""
    first = len(load.ids)
    async with httpx.AsyncClient(timeout=60) as client:
        ids = [await stack.submit(client, BOOK, f"book-{first + n}.pdf") for n in range(count)]
    load.ids += ids
    load.pollers += [asyncio.create_task(stack.poll(job_id)) for job_id in ids]
    return ids


MAKE_RUN_STALENESS = {"STALE_AFTER_S": "60", "WORKER_STALE_S": "10"}
# name, fault, job slots per worker, replica-set members, settings over the chaos tests' own
FAULTS: list[tuple[str, Fault, int, int, dict[str, str]]] = [
    ("mongod killed, restarted", mongod_killed, 1, 1, {}),
    ("redis killed, restarted empty", redis_killed, 1, 1, {}),
    ("worker SIGKILLed mid-job", worker_killed, 1, 1, {}),
    (
        "worker SIGKILLed, restarted 1 s later",
        worker_killed_and_restarted,
        1,
        1,
        MAKE_RUN_STALENESS,
    ),
    ("worker SIGSTOPped past WORKER_STALE_S", worker_stalled, 2, 1, {}),
    ("API restarted, polls in flight", api_restarted, 1, 1, {}),
    ("deploy storm: a worker SIGTERMed and restarted", deploy_storm, 1, 1, {}),
    ("primary SIGKILLed (3-member replica set)", primary_killed, 1, 3, {}),
]


async def run_fault(
    name: str,
    fault: Fault,
    concurrency: int,
    members: int,
    settings: dict[str, str],
    jobs: int,
    pages: int,
) -> str:
    with tempfile.TemporaryDirectory(prefix="pcj-chaos-") as tmp:
        stack = Stack(Path(tmp))
        load = Load()
        try:
            # One user submits them all.
            await stack.start(members=members, MAX_ACTIVE_JOBS_PER_USER="100", **settings)
            stack.add_worker(concurrency)
            stack.add_worker(concurrency)
            await submit(stack, load, jobs)
            started = time.monotonic()
            await stack.until(
                lambda: stack.mid_job(load.ids, 31, 69), 300, "jobs mid-way and jobs waiting"
            )
            recovery = await fault(stack, load)
            await stack.until(lambda: stack.all_finished(load.ids), 900, "every job to finish")
            total = time.monotonic() - started
            await asyncio.wait_for(asyncio.gather(*load.pollers), 60)
            verdict = await stack.verify(dict.fromkeys(load.ids, pages))
        finally:
            await stack.close()
        counts = [worker.rendered() for worker in stack.workers]
    figure = f"{recovery:.2f} s" if isinstance(recovery, float) else recovery
    # Unknown when a worker was SIGKILLed: its count died with it.
    ratio = "-" if None in counts else f"{sum(filter(None, counts)) / (len(load.ids) * pages):.3f}"
    answers = " ".join(f"{k}:{v}" for k, v in sorted(verdict.answers.items()))
    return (
        f"| {name} | {figure} | {ratio} | {len(verdict.lost)} "
        f"| {len(verdict.duplicated)} | {len(verdict.stuck) + verdict.unfinished} "
        f"| {len(load.ids)} jobs in {total:.1f} s | {answers} |"
    )


async def main() -> int:
    global BOOK
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--pages", type=int, default=300)
    parser.add_argument("--only", help="run the faults whose name contains this")
    args = parser.parse_args()
    BOOK = book_pdf(args.pages, lines=60)
    print(f"{args.jobs} jobs of {args.pages} pages (60 lines each), 2 workers, each fault alone\n")
    print(
        "| fault | recovered in | pages rendered / pages | lost | duplicated | stuck | load "
        "| poll answers |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, fault, concurrency, members, settings in FAULTS:
        if args.only and args.only not in name:
            continue
        row = await run_fault(name, fault, concurrency, members, settings, args.jobs, args.pages)
        print(row, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
