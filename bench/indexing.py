"""Does indexing starve rendering? A real worker with INDEX_CHAPTERS=true against =false.

Each round starts a fresh ``python -m worker`` (``bench/probed_worker.py``: the real worker plus
a probe of its event loop) on one bench bed, once with the indexer and once without, in turn
(ABBA: the order flips every round, so a machine getting busier or quieter favours neither), and
feeds it the same stream of jobs, ``--in-flight`` at a time (the next enqueued as one completes,
so a job's time is its own, not a queue's that grew behind a slow one), alternating

- text: ``book_pdf(--text-pages)`` (text-heavy pages), content mode ``pdf_file``;
- images: ``figure_heavy_pdf(--image-pages)`` (a figure, a paragraph, a picture a page), every
  page rendered to WebP in GridFS (``pdf_pages``).

With the indexer on, the worker has a long chapter to index from the round's first completed
job on (``--backlog-pages`` of ``book_pdf``, made once, its chunks deleted and its search state
put back to pending before each round, so it is claimed first every time): the indexer reads its
pages, chunks them, writes the passages and embeds them batch after batch for the rest of the
round, as it does behind a busy worker (embedding a 300-page chapter takes minutes of CPU,
rendering it a second). ``--start-at embedding`` starts the stream only once the backlog's
passages are written and a first batch embedded: the indexer's steady state, embedding alone.
Before the stream, the worker is warmed: a 2-page job, and with the indexer, that job's chapter
indexed (the embedding process is started and its model loaded).

Figures, per configuration (medians over rounds) and as on/off ratios, of the medians and the
median of each pair's (the target is 1.10 or less for times, 0.90 or more for pages/s):
- time to chapter, enqueue -> completed, of each kind: p50 and max (and every job's, in order);
- pages/s of each kind, claim -> completed (bench/render.py's measure), the median job;
- stream pages/s: the stream's pages over first enqueue -> last completion;
- the worker's event loop: how late a 10 ms timer fires (p50, p99, max) during the stream;
- CPU seconds per kind of process during the stream, from /proc: the worker, its render
  processes, its chunking and embedding processes, mongod, this process, and the rest of the
  machine (other work on it); and seconds each kind waited for a CPU (``schedstat``), and the
  machine's CPU pressure (``/proc/pressure/cpu``, the share of the time some task waited);
- with the indexer: the backlog chapter's passages written and embedded by the stream's end
  (what the indexer got done: an indexer that never runs starves nothing).

Prints figures; never passes or fails. Run: .venv/bin/python bench/indexing.py [--rounds 3]
(about 4 minutes with the defaults).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bed import Servers, bench_env, connected, enqueue, servers, submit, upload  # noqa: E402
from devstack.embedded import stop  # noqa: E402
from service.domain import indexing  # noqa: E402
from service.domain.chapter import ChapterOptions, ContentMode  # noqa: E402
from service.store.database import Store  # noqa: E402
from tests.support.pdfs import book_pdf, figure_heavy_pdf  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")
TEXT = ChapterOptions(content_mode=ContentMode.pdf_file)
IMAGES = ChapterOptions(content_mode=ContentMode.pdf_pages)
KINDS = ("worker", "render", "chunking", "embedding", "mongod", "bench", "others")
# The backlog chapter is claimed before any other: its request is older than any of theirs.
LONG_AGO = datetime(2000, 1, 1, tzinfo=UTC)


@dataclass
class Round:
    """What one worker did with one stream."""

    indexing: bool
    times: dict[str, list[float]] = field(default_factory=dict)  # kind -> seconds to chapter
    rates: dict[str, list[float]] = field(default_factory=dict)  # kind -> pages/s of each job
    pages_per_s: float = 0.0
    lags_ms: list[float] = field(default_factory=list)
    cpu_s: dict[str, float] = field(default_factory=dict)
    wait_s: dict[str, float] = field(default_factory=dict)  # waiting for a CPU
    pressure: float = 0.0  # share of the stream the machine had a task waiting for a CPU
    order: list[str] = field(default_factory=list)  # each job's kind and time, in order
    chunked: int = 0  # passages of the backlog chapter written during the stream
    embedded: int = 0
    load: tuple[float, float] = (0.0, 0.0)  # 1-minute load average at start, end


# --- CPU seconds per kind of process, sampled from /proc -------------------------------------


def _stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None


def _cpu(pid: int) -> float | None:
    fields = _stat(pid)
    return None if fields is None else (int(fields[11]) + int(fields[12])) / TICKS


def _waited(pid: int) -> float:
    """Seconds the process's threads (those alive now) spent runnable, waiting for a CPU."""
    total = 0
    with contextlib.suppress(FileNotFoundError, ProcessLookupError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with (
                contextlib.suppress(FileNotFoundError, ProcessLookupError),
                open(f"/proc/{pid}/task/{task}/schedstat") as schedstat,
            ):
                total += int(schedstat.read().split()[1])
    return total / 1e9


def _cpu_pressure_s() -> float:
    """The machine's CPU pressure ("some": time at least one task waited for a CPU)."""
    with open("/proc/pressure/cpu") as pressure:
        return int(pressure.readline().rsplit("total=", 1)[1]) / 1e6


def _children(pid: int) -> list[int]:
    found: list[int] = []
    with contextlib.suppress(FileNotFoundError, ProcessLookupError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as children:
                found.extend(int(child) for child in children.read().split())
    return found


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            return cmdline.read().replace(b"\0", b" ").decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return ""


def _machine_busy_s() -> float:
    with open("/proc/stat") as stat:
        fields = [int(value) for value in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / TICKS


class CpuMeter:
    """CPU seconds, and seconds spent waiting for a CPU, of the worker's processes by kind, of
    mongod, this process and the machine, between ``start()`` and ``stop()``. A process that
    exits in between counts up to its last sample (every 0.2 s)."""

    def __init__(self, worker_pid: int, mongod_pid: int) -> None:
        self._worker = worker_pid
        self._mongod = mongod_pid
        self._seen: dict[int, tuple[str, float, float]] = {}  # pid -> kind, CPU s, wait s
        self._base: dict[int, tuple[str, float, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _kinds(self) -> dict[int, str]:
        kinds = {self._worker: "worker", self._mongod: "mongod"}
        for child in _children(self._worker):
            line = _cmdline(child)
            if "forkserver" in line:
                kinds[child] = "render"
                kinds.update(dict.fromkeys(_children(child), "render"))
            elif "spawn_main" in line:
                kinds[child] = "embedding"
            elif "service.retrieval.chunker" in line:
                kinds[child] = "chunking"
            else:
                kinds[child] = "worker"  # the resource tracker
        return kinds

    def _sample(self) -> None:
        for pid, kind in self._kinds().items():
            seconds = _cpu(pid)
            if seconds is not None:
                self._seen[pid] = (kind, seconds, _waited(pid))

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self._sample()

    def start(self) -> None:
        self._sample()
        self._base = dict(self._seen)
        times = os.times()
        self._bench = times.user + times.system
        self._machine = _machine_busy_s()
        self._pressure = _cpu_pressure_s()
        self._wall = time.monotonic()
        self._thread.start()

    def stop(self) -> tuple[dict[str, float], dict[str, float], float]:
        """CPU seconds by kind, wait seconds by kind, and the share of the time the machine
        had a task waiting for a CPU."""
        self._stop.set()
        self._thread.join()
        self._sample()
        cpu = dict.fromkeys(KINDS, 0.0)
        wait = dict.fromkeys(KINDS[:-2], 0.0)
        for pid, (kind, seconds, waited) in self._seen.items():
            _, base_cpu, base_wait = self._base.get(pid, (kind, 0.0, 0.0))
            cpu[kind] += seconds - base_cpu
            wait[kind] += max(0.0, waited - base_wait)
        times = os.times()
        cpu["bench"] = times.user + times.system - self._bench
        ours = sum(cpu.values())
        cpu["others"] = max(0.0, _machine_busy_s() - self._machine - ours)
        pressure = (_cpu_pressure_s() - self._pressure) / (time.monotonic() - self._wall)
        return cpu, wait, pressure


def _lags(path: Path, start: float, end: float) -> list[float]:
    """The probe's samples (ms) flushed between ``start`` and ``end`` (unix time)."""
    lags: list[float] = []
    if not path.exists():
        return lags
    for line in path.read_text().splitlines():
        stamp, *values = line.split()
        if start <= float(stamp) <= end + 1:
            lags.extend(float(value) for value in values)
    return lags


# --- One round ---------------------------------------------------------------------------------


async def wait_done(store: Store, job_id: str, limit_s: float = 600) -> dict[str, Any]:
    """The job once it ended. Looks every 25 ms: the times measured are MongoDB's stamps, and
    a faster look would only load mongod and this process."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        doc = await store.collections.jobs.find_one({"job_id": job_id})
        if doc and doc["status"] in ("completed", "failed", "cancelled"):
            return dict(doc)
        await asyncio.sleep(0.025)
    raise TimeoutError(job_id)


def start_worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "bench.probed_worker"], cwd=ROOT, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


async def _settle_chapters(store: Store, backlog: str) -> None:
    """Nothing left to index but the backlog chapter, which starts over from nothing."""
    chapters = store.collections.chapters
    await chapters.update_many(
        {"chapter_id": {"$ne": backlog}}, {"$set": {"search.status": "ready"}}
    )
    await chapters.update_one(
        {"chapter_id": backlog}, {"$set": {"search.status": "ready", "search.lease_id": None}}
    )
    await store.collections.chunks.delete_many({})
    # What the last round wrote goes to disk now, not during this one.
    await store.client.admin.command("fsync")


async def _wait_indexed(store: Store, job_id: str, limit_s: float = 120) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        chapter = await store.collections.chapters.find_one({"job_id": job_id}, {"search": 1})
        if chapter and (chapter.get("search") or {}).get("status") == "ready":
            return
        await asyncio.sleep(0.1)
    raise TimeoutError(f"the warm-up chapter of {job_id} was not indexed in {limit_s:g} s")


async def _wait_chunked(store: Store, chapter_id: str, limit_s: float = 300) -> int:
    """Once the chapter's passages are written and its first batch embedded: how many are."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        chapter = await store.collections.chapters.find_one({"chapter_id": chapter_id})
        search = (chapter or {}).get("search") or {}
        if search.get("status") == "indexing" and search.get("embedded"):
            return int(search["embedded"])
        await asyncio.sleep(0.1)
    raise TimeoutError(f"the backlog chapter was not chunked in {limit_s:g} s")


async def run_round(
    bed: Servers, store: Store, queue: Any, args: argparse.Namespace, *, indexing_on: bool,
    backlog: str, number: int,
) -> Round:  # fmt: skip
    result = Round(indexing_on, load=(os.getloadavg()[0], 0.0))
    probe = bed.tmp / f"probe-{number}-{int(indexing_on)}.txt"
    env = bench_env(
        bed, PAGE_STORE="gridfs", INDEX_CHAPTERS=str(indexing_on).lower(),
        INDEX_POLL_INTERVAL_S="1",
        PCJ_LOOP_PROBE=str(probe),
    )  # fmt: skip
    await _settle_chapters(store, backlog)
    worker = start_worker(env)
    try:
        warm = await submit(store, queue, figure_heavy_pdf(2), f"warm-{number}.pdf")
        await wait_done(store, warm)
        if indexing_on:
            await _wait_indexed(store, warm)
        # The stream's files, uploaded before its clock starts.
        files = []
        for index in range(args.jobs):
            if index % 2 == 0:
                files.append(("text", args.text_pages, TEXT, book_pdf(args.text_pages)))
            else:
                files.append(
                    ("images", args.image_pages, IMAGES, figure_heavy_pdf(args.image_pages))
                )
        uploaded = [
            (kind, pages, options, await upload(store, data, f"{number}-{index}-{kind}.pdf"))
            for index, (kind, pages, options, data) in enumerate(files)
        ]
        await store.chapters.request_index(indexing.request({"chapter_id": backlog}, LONG_AGO))
        before = 0
        if indexing_on and args.start_at == "embedding":
            before = await _wait_chunked(store, backlog)
        meter = CpuMeter(worker.pid, bed.mongod.process.pid)
        meter.start()
        started_wall = time.time()
        todo = iter(uploaded)
        finished = 0.0
        done: list[int] = []

        async def lane() -> None:
            # One job after another: with --in-flight lanes, the worker always has that many.
            nonlocal finished
            for kind, pages, options, file_id in todo:
                doc = await wait_done(store, await enqueue(store, queue, file_id, options))
                assert doc["status"] == "completed", doc.get("error")
                # Both stamps are UTC: created_at by this process at the enqueue, completed_at
                # by the worker.
                seconds = (doc["completed_at"] - doc["created_at"]).total_seconds()
                result.times.setdefault(kind, []).append(seconds)
                result.order.append(f"{kind[0]}{seconds:.1f}")
                claimed = (doc["completed_at"] - doc["started_at"]).total_seconds()
                result.rates.setdefault(kind, []).append(pages / claimed)
                finished = max(finished, doc["completed_at"].timestamp())
                done.append(pages)

        await asyncio.gather(*(lane() for _ in range(args.in_flight)))
        result.cpu_s, result.wait_s, result.pressure = meter.stop()
        result.pages_per_s = sum(done) / (finished - started_wall)
        result.lags_ms = _lags(probe, started_wall, finished)
        chapter = await store.collections.chapters.find_one({"chapter_id": backlog}, {"search": 1})
        result.embedded = int(((chapter or {}).get("search") or {}).get("embedded") or 0) - before
        result.chunked = await store.collections.chunks.count_documents({"chapter_id": backlog})
    finally:
        stop(worker)
    result.load = (result.load[0], os.getloadavg()[0])
    return result


# --- Printing ---------------------------------------------------------------------------------


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def _summary(r: Round) -> dict[str, float]:
    out: dict[str, float] = {}
    for kind, times in r.times.items():
        out[f"{kind} p50 s"] = statistics.median(times)
        out[f"{kind} max s"] = max(times)
        out[f"{kind} pages/s"] = statistics.median(r.rates[kind])
    out["stream pages/s"] = r.pages_per_s
    out["loop lag p50 ms"] = _pct(r.lags_ms, 0.5)
    out["loop lag p99 ms"] = _pct(r.lags_ms, 0.99)
    out["loop lag max ms"] = max(r.lags_ms, default=float("nan"))
    for kind, seconds in r.cpu_s.items():
        out[f"CPU s {kind}"] = seconds
    for kind, seconds in r.wait_s.items():
        out[f"CPU wait s {kind}"] = seconds
    out["CPU pressure %"] = 100 * r.pressure
    out["passages written"] = r.chunked
    out["passages embedded"] = r.embedded
    return out


def print_round(number: int, r: Round) -> None:
    s = _summary(r)
    label = "on " if r.indexing else "off"
    times = "  ".join(
        f"{kind} p50 {s[f'{kind} p50 s']:.2f} s max {s[f'{kind} max s']:.2f} s "
        f"{s[f'{kind} pages/s']:.0f} pages/s"
        for kind in ("text", "images")
    )
    cpu = " ".join(f"{kind} {s[f'CPU s {kind}']:.1f}" for kind in KINDS)
    wait = " ".join(f"{kind} {seconds:.1f}" for kind, seconds in r.wait_s.items())
    print(
        f"  round {number} indexing {label}: {times}  stream {s['stream pages/s']:.0f} pages/s  "
        f"loop lag p50/p99/max {s['loop lag p50 ms']:.1f}/{s['loop lag p99 ms']:.1f}/"
        f"{s['loop lag max ms']:.0f} ms"
    )
    print(f"      jobs (t: text, i: images), s to chapter: {' '.join(r.order)}")
    print(f"      waited for a CPU, s: {wait}  machine CPU pressure {100 * r.pressure:.0f}%")
    print(
        f"      CPU s: {cpu}  passages written {r.chunked} embedded {r.embedded}  load {r.load[0]:.1f} -> {r.load[1]:.1f}",
        flush=True,
    )


def print_summary(rounds: list[Round]) -> None:
    on = [_summary(r) for r in rounds if r.indexing]
    off = [_summary(r) for r in rounds if not r.indexing]
    print(
        "\nmedians over rounds       indexing off   indexing on    on/off   on/off of a pair "
        "(median, min-max)"
    )
    for key in on[0]:
        a = statistics.median(s[key] for s in off)
        b = statistics.median(s[key] for s in on)
        ratio = f"{b / a:6.2f}" if a else "     -"
        # Each round's on/off ratio against the other run of its pair (next to it in time).
        pairs = [y[key] / x[key] for x, y in zip(off, on, strict=True) if x[key]]
        if pairs:
            ratio += f"   {statistics.median(pairs):6.2f} ({min(pairs):.2f}-{max(pairs):.2f})"
        target = ""
        if key.endswith(" s") and not key.startswith("CPU"):
            target = "  (target <= 1.10)"
        elif key.endswith("pages/s"):
            target = "  (target >= 0.90)"
        print(f"  {key:22s} {a:12.2f} {b:14.2f}   {ratio}{target}")


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=4, help="pairs of rounds (off, on)")
    parser.add_argument("--jobs", type=int, default=8, help="jobs in each round's stream")
    parser.add_argument(
        "--in-flight", type=int, default=2,
        help="jobs enqueued and not finished at any time (the next is enqueued as one ends)",
    )  # fmt: skip
    parser.add_argument("--text-pages", type=int, default=300)
    parser.add_argument("--image-pages", type=int, default=15)
    parser.add_argument("--backlog-pages", type=int, default=1200)
    parser.add_argument(
        "--start-at", choices=("claim", "embedding"), default="claim",
        help="start the stream as the indexer claims the backlog chapter (it reads, chunks, "
        "writes and embeds it during the stream), or once it embeds it (the steady state)",
    )  # fmt: skip
    args = parser.parse_args()
    print(f"CPUs {len(os.sched_getaffinity(0))}, load average {os.getloadavg()[0]:.1f} at start")
    print(
        f"stream: {args.jobs} jobs, {args.in_flight} in flight, alternating text "
        f"({args.text_pages} pages, pdf_file) and images ({args.image_pages} pages, pdf_pages); "
        f"backlog chapter {args.backlog_pages} pages, the stream starts at its {args.start_at}"
    )
    rounds: list[Round] = []
    with servers("pcj-bench-") as bed:
        async with connected(bed) as (_, store, queue):
            setup = start_worker(bench_env(bed, INDEX_CHAPTERS="false", PCJ_LOOP_PROBE=os.devnull))
            try:
                job_id = await submit(
                    store, queue, book_pdf(args.backlog_pages), "backlog.pdf", TEXT
                )
                doc = await wait_done(store, job_id)
            finally:
                stop(setup)
            backlog = doc["result"]["chapter_id"]
            for number in range(args.rounds):
                order = (False, True) if number % 2 == 0 else (True, False)
                for indexing_on in order:
                    r = await run_round(
                        bed, store, queue, args, indexing_on=indexing_on, backlog=backlog,
                        number=number,
                    )  # fmt: skip
                    rounds.append(r)
                    print_round(number, r)
    print_summary(rounds)
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
