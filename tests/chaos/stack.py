"""A whole deployment on loopback, to break on purpose: for tests/chaos and bench/chaos.py.

Its own mongod (one member, or a replica set of several) and redis-server (from the
devstack.embedded wheels, on free ports, so killing them touches nothing else), the API under
granian, workers as ``python -m worker``, each in a process group of its own with its log in
``root``. Clients upload PDFs, poll their jobs and follow their event streams over HTTP like a
browser, and remember every answer. ``verify`` then checks, from MongoDB and the workers' logs,
that every job completed exactly once with every page.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from pymongo import AsyncMongoClient

from devstack.api import api_command
from devstack.embedded import (
    ReplicaSet,
    Server,
    free_port,
    remove_tree,
    start_mongod,
    start_redis,
    start_replica_set,
)
from devstack.token import emulator_token
from indexes.spec import specification
from indexes.sync import sync
from service.settings import Settings

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
PROJECT = "demo-chaos"
DB = "pcj_chaos"
JOBS = "/api/v1/books/jobs"
TERMINAL = {"completed", "failed", "cancelled"}
# Small settings, so that every recovery path runs within seconds.
FAST = {
    "STALE_AFTER_S": "3",
    "WORKER_STALE_S": "3",
    "HEARTBEAT_INTERVAL_S": "0.5",
    "SWEEP_INTERVAL_S": "1",
    "PENDING_GRACE_S": "2",
    "MONGODB_TIMEOUT_MS": "1000",
    "MONGODB_STARTUP_WAIT_S": "5",
    "LOG_LEVEL": "INFO",
    "RENDER_PROCESSES": "1",
    # Jobs alone: a 1,200-page chapter is thousands of passages to embed, minutes of CPU the
    # job tests do not need. The indexing test turns it on for its small chapters.
    "INDEX_CHAPTERS": "false",
    # One user submits every job here, and faults must find several of them running on each
    # worker at once; one running job per user is tested in tests/worker/test_fair.py.
    "MAX_RUNNING_JOBS_PER_USER": "100",
}
# Text only (the PDF itself is the chapter): thousands of pages a second. "pdf_pages" renders
# every page to an image in GridFS, at a few dozen pages a second.
TEXT, IMAGES = "pdf_file", "pdf_pages"


@dataclass
class Process:
    """A child in its own process group, logging to ``log``."""

    name: str
    args: list[str]
    env: dict[str, str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.popen = subprocess.Popen(
                self.args, cwd=REPO_ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def send(self, sig: signal.Signals) -> None:
        assert self.popen is not None
        self.popen.send_signal(sig)

    @property
    def stopped(self) -> bool:
        """Stopped by SIGSTOP (state T in /proc): it runs no more code until SIGCONT."""
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        return stat[stat.rindex(")") + 2] == "T"

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (SIGCONT first, in case it is stopped), SIGKILL after ``timeout``; then the
        rest of its process group (a worker's PDF children, granian's workers)."""
        if self.popen is None:
            return
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGCONT)
            self.popen.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)

    def kill(self, sig: signal.Signals = signal.SIGKILL) -> None:
        self.send(sig)
        if sig is signal.SIGKILL:
            assert self.popen is not None
            self.popen.wait(10)


@dataclass
class Worker(Process):
    metrics_port: int = 0

    def rendered(self) -> int | None:
        """Pages rendered by every process of this worker (each logs its count as it exits: its
        metrics go with it); None when one of them exited without saying (SIGKILL)."""
        lines = self.log.read_text(errors="replace").splitlines()
        counts = [
            int(match.group(1))
            for line in lines
            if (match := re.search(r'"message": "worker stopped: (\d+) pages rendered', line))
        ]
        started = sum(
            '"message": "worker ' in line and " started (incarnation " in line for line in lines
        )
        return sum(counts) if len(counts) == started else None

    def metric(self, text: str) -> float | None:
        """The value of the series ``text`` (name and labels as exposed) on /metrics."""
        try:
            body = httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2).text
        except httpx.TransportError:
            return None
        match = re.search(rf"^{re.escape(text)} (\S+)$", body, flags=re.M)
        return float(match.group(1)) if match else None


@dataclass
class Poll:
    at: float
    job_id: str
    outcome: str  # an HTTP status ("200", "503"...) or the transport error's class name
    progress: int | None = None  # a 200's progress and "Processed i/n pages..." count
    processed: int | None = None


@dataclass
class Event:
    """One server-sent event as a browser's EventSource sees it."""

    kind: str
    id: str | None
    data: dict[str, Any]


@dataclass
class Follower:
    """A browser following one job's event stream: every connection's events, in order."""

    job_id: str
    connections: list[list[Event]] = field(default_factory=list)

    @property
    def states(self) -> list[Event]:
        return [e for events in self.connections for e in events if e.kind == "progress"]

    def pages(self, connection: list[Event]) -> list[int]:
        return [int(e.data["page_number"]) for e in connection if e.kind == "page"]


@dataclass
class Stack:
    root: Path
    env: dict[str, str] = field(default_factory=dict)
    replica: ReplicaSet | None = None
    mongod: Server | None = None
    redis: Server | None = None
    api: Process | None = None
    api_port: int = 0
    workers: list[Worker] = field(default_factory=list)
    polls: list[Poll] = field(default_factory=list)
    mongo: AsyncMongoClient[dict[str, Any]] | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self, members: int = 1, **settings: str) -> None:
        """Start everything but the workers; ``members`` > 1: MongoDB as a replica set."""
        if members > 1:
            self.replica = await asyncio.to_thread(start_replica_set, self.root / "mongod", members)
        else:
            self.mongod = start_mongod(self.root / "mongod", free_port())
        self.redis = start_redis(self.root / "redis", free_port(), persistent=False)
        self.api_port = free_port()
        self.env = {
            **os.environ,
            "MONGODB_URL": self.mongo_url,
            "MONGODB_DB": DB,
            "REDIS_URL": self.redis.url,
            "FIREBASE_PROJECT_ID": PROJECT,
            "FIREBASE_AUTH_EMULATOR_HOST": "127.0.0.1:9099",  # never contacted
            "NO_PROXY": "127.0.0.1,localhost",
            **FAST,
            **settings,
        }
        self.mongo = AsyncMongoClient(self.mongo_url, tz_aware=True)
        base = Settings(mongodb_url=self.mongo_url, mongodb_db=DB)
        await sync(self.mongo[DB], specification(base))
        self.api = Process("api", api_command(self.api_port), self.env, self.root / "api.log")
        self.api.start()
        await self.wait_api()

    @property
    def mongo_url(self) -> str:
        if self.replica is not None:
            return self.replica.url
        assert self.mongod is not None
        return self.mongod.url

    def add_worker(self, concurrency: int = 1) -> Worker:
        port = free_port()
        worker = Worker(
            f"worker-{len(self.workers) + 1}",
            [sys.executable, "-m", "worker"],
            {**self.env, "WORKER_CONCURRENCY": str(concurrency), "WORKER_METRICS_PORT": str(port)},
            self.root / f"worker-{len(self.workers) + 1}.log",
            metrics_port=port,
        )
        worker.start()
        self.workers.append(worker)
        return worker

    async def close(self) -> None:
        for worker in self.workers:
            worker.stop()
        if self.api is not None:
            self.api.stop()
        if self.mongo is not None:
            await self.mongo.close()
        if self.replica is not None:
            # Killed: their data goes next, and a member stopped cleanly waits up to 15 s for
            # the others to catch up.
            for member in self.replica.members:
                self.replica.kill(member)
        for server in (self.redis, self.mongod):
            if server is not None:
                server.stop()
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(server.process.pid, signal.SIGKILL)
        remove_tree(self.root / "mongod")

    # --- faults ------------------------------------------------------------------------------

    def kill_mongod(self) -> None:
        assert self.mongod is not None
        self.mongod.process.kill()
        self.mongod.process.wait(30)

    def restart_mongod(self) -> None:
        """The same data directory and port, as a restarted server would have."""
        assert self.mongod is not None
        self.mongod = start_mongod(self.root / "mongod", self.mongod.port)

    async def kill_primary(self) -> Server:
        """SIGKILL the replica set's primary (found once one is elected); the member killed."""
        assert self.replica is not None
        primary = None
        while primary is None:
            primary = await asyncio.to_thread(self.replica.primary)
        self.replica.kill(primary)
        return primary

    async def restart_member(self, member: Server) -> None:
        """The killed member back on its data; returns once it is a secondary again."""
        assert self.replica is not None
        await asyncio.to_thread(self.replica.restart, member)

    def kill_redis(self) -> None:
        assert self.redis is not None
        self.redis.process.kill()
        self.redis.process.wait(30)

    def restart_redis(self) -> None:
        """Empty: the doorbells queued before the crash are gone."""
        assert self.redis is not None
        self.redis = start_redis(self.root / "redis", self.redis.port, persistent=False)

    async def pause(self, process: Process) -> None:
        """SIGSTOP ``process``, returning once it has stopped: ``kill`` returns before that,
        while it may still be running on another core."""
        process.send(signal.SIGSTOP)
        await self.until(lambda: process.stopped, 10, f"{process.name} to stop")

    async def restart_api(self) -> None:
        """SIGTERM (granian drains the requests in flight), then a new API on the same port."""
        assert self.api is not None
        await asyncio.to_thread(self.api.stop)
        self.api.start()
        await self.wait_api()

    async def wait_api(self, seconds: float = 60) -> None:
        async with httpx.AsyncClient() as client:
            for _ in range(int(seconds / 0.1)):
                with contextlib.suppress(httpx.TransportError):
                    response = await client.get(f"{self.api_url}/health", timeout=2)
                    if response.status_code == 200:
                        return
                await asyncio.sleep(0.1)
        raise RuntimeError(f"the API did not start:\n{_tail(self.root / 'api.log')}")

    # --- clients -----------------------------------------------------------------------------

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def headers(self, user: str = "alice") -> dict[str, str]:
        return {"Authorization": f"Bearer {emulator_token(user, PROJECT)}"}

    async def submit(
        self, client: httpx.AsyncClient, pdf: bytes, name: str, content_mode: str = TEXT
    ) -> str:
        """Upload a PDF and create its job (as a browser would); the job id."""
        uploaded = await client.post(
            f"{self.api_url}/api/v1/files",
            files={"file": (name, pdf, "application/pdf")},
            headers=self.headers(),
        )
        uploaded.raise_for_status()
        created = await client.post(
            f"{self.api_url}{JOBS}",
            json={
                "book_id": "book_chaos",
                "file_id": uploaded.json()["file_id"],
                "content_mode": content_mode,
            },
            headers=self.headers(),
        )
        assert created.status_code == 202, created.text
        return str(created.json()["job_id"])

    async def poll(self, job_id: str, every_s: float = 0.2) -> None:
        """Poll one job until it is finished, with If-None-Match, remembering every answer."""
        etag = None
        async with httpx.AsyncClient(timeout=15) as client:
            while True:
                headers = self.headers() | ({"If-None-Match": etag} if etag else {})
                try:
                    response = await client.get(f"{self.api_url}{JOBS}/{job_id}", headers=headers)
                except httpx.TransportError as exc:
                    self.polls.append(Poll(time.monotonic(), job_id, _transport_outcome(exc)))
                    await asyncio.sleep(every_s)
                    continue
                poll = Poll(time.monotonic(), job_id, str(response.status_code))
                self.polls.append(poll)
                if response.status_code == 200:
                    etag = response.headers.get("etag")
                    body = response.json()
                    poll.progress = body["progress"]
                    if match := re.match(r"Processed (\d+)/\d+ pages", body["message"]):
                        poll.processed = int(match.group(1))
                    if body["status"] in TERMINAL:
                        return
                await asyncio.sleep(every_s)

    async def follow(self, job_id: str) -> Follower:
        """Follow one job's event stream as EventSource does until its terminal state:
        reconnecting after any break with ``Last-Event-ID``; each connect's answer is
        remembered with the polls (a 503 is allowed, as for a poll)."""
        follower = Follower(job_id)
        last_id: str | None = None
        url = f"{self.api_url}{JOBS}/{job_id}/events"
        async with httpx.AsyncClient(timeout=httpx.Timeout(15, read=60)) as client:
            while True:
                headers = self.headers() | ({"Last-Event-ID": last_id} if last_id else {})
                events: list[Event] = []
                follower.connections.append(events)
                try:
                    async with client.stream("GET", url, headers=headers) as response:
                        self.polls.append(Poll(time.monotonic(), job_id, str(response.status_code)))
                        if response.status_code == 204:
                            return follower
                        if response.status_code == 200:
                            async for event in _events(response):
                                events.append(event)
                                last_id = event.id or last_id
                                if event.kind == "progress" and event.data["status"] in TERMINAL:
                                    return follower
                except httpx.TransportError:
                    pass  # the API or the stream broke: reconnect, as EventSource does
                await asyncio.sleep(0.2)

    # --- what MongoDB says -------------------------------------------------------------------

    @property
    def db(self) -> Any:
        assert self.mongo is not None
        return self.mongo[DB]

    async def jobs(self, job_ids: list[str]) -> list[dict[str, Any]]:
        found = await self.db.pdf_chapter_jobs.find(
            {"job_id": {"$in": job_ids}}, {"_id": 0, "job_id": 1, "status": 1, "progress": 1}
        ).to_list()
        return list(found)

    async def until(self, predicate: Any, seconds: float, what: str) -> None:
        """Poll ``predicate`` (plain or async) every 50 ms; fail naming ``what`` after
        ``seconds``."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):  # MongoDB may be down while we wait
                result = predicate()
                if inspect.isawaitable(result):
                    result = await result
                if result:
                    return
            await asyncio.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}\n{self.diagnosis()}")

    async def mid_job(self, job_ids: list[str], low: int = 35, high: int = 60) -> bool:
        """Some jobs are being extracted (progress ``low``-``high``) and some still wait."""
        docs = await self.jobs(job_ids)
        running = [d for d in docs if d["status"] == "processing" and low <= d["progress"] <= high]
        return bool(running) and any(d["status"] == "pending" for d in docs)

    async def all_finished(self, job_ids: list[str]) -> bool:
        return all(d["status"] in TERMINAL for d in await self.jobs(job_ids))

    # --- verdict -----------------------------------------------------------------------------

    def claims(self, worker: Process) -> list[str]:
        """The jobs ``worker`` claimed, in order (its log's "processing" lines)."""
        return [
            match.group(1)
            for line in worker.log.read_text(errors="replace").splitlines()
            if (match := re.search(r'"message": "job (\S+): processing ', line))
        ]

    def lease_losses(self, worker: Process) -> list[str]:
        """The jobs whose run in ``worker`` found its lease gone and stopped."""
        return [
            match.group(1)
            for line in worker.log.read_text(errors="replace").splitlines()
            if (match := re.search(r'"message": "job (\S+): stopped: the lease was lost', line))
        ]

    def completions(self) -> Counter[str]:
        """Job id -> how many times a worker logged completing it."""
        done: Counter[str] = Counter()
        for worker in self.workers:
            for line in worker.log.read_text(errors="replace").splitlines():
                with contextlib.suppress(ValueError):
                    record = json.loads(line)
                    match = re.match(
                        r"job (\S+): completed, \d+ pages?$", record.get("message", "")
                    )
                    if match:
                        done[match.group(1)] += 1
        return done

    async def verify(self, expected: dict[str, int], rendered: set[str] = frozenset()) -> Verdict:
        """Every job (id -> its page count) completed exactly once, with every page, each once,
        and its chapter; the ``rendered`` ones with an image of every page too."""
        verdict = Verdict(jobs=len(expected))
        completions = self.completions()
        for job_id, pages in expected.items():
            job = await self.db.pdf_chapter_jobs.find_one({"job_id": job_id})
            if job is None or job["status"] != "completed":
                verdict.stuck.append(f"{job_id}: {job and job['status']}")
                continue
            verdict.attempts[job_id] = job.get("attempts", 0)
            indexes = [
                doc["page_index"]
                async for doc in self.db.chapter_pages.find(
                    {"job_id": job_id}, {"page_index": 1, "content": 1}
                )
                if doc["content"].startswith(f"Page {doc['page_index'] + 1} line 0:")
            ]
            chapters = await self.db.book_chapters.count_documents(
                {"job_id": job_id, "chapter_id": job["result"]["chapter_id"]}
            )
            if sorted(indexes) != list(range(pages)) or job["result"]["total_pages"] != pages:
                verdict.lost.append(f"{job_id}: {len(set(indexes))} of {pages} pages")
            if chapters != 1:
                verdict.lost.append(f"{job_id}: {chapters} chapters")
            if job_id in rendered:
                prefix = f"chapters/{job['result']['chapter_id']}/page-"
                images = await self.db["page_images.files"].count_documents(
                    {"_id": {"$regex": "^" + re.escape(prefix)}}
                )
                if images != pages:
                    verdict.lost.append(f"{job_id}: {images} of {pages} page images")
            if completions[job_id] != 1:
                verdict.duplicated.append(f"{job_id}: completed {completions[job_id]} times")
        verdict.unfinished = await self.db.pdf_chapter_jobs.count_documents(
            {"status": {"$in": ["pending", "processing"]}}
        )
        verdict.answers = Counter(poll.outcome for poll in self.polls)
        return verdict

    def diagnosis(self) -> str:
        parts = [f"--- {p.name}\n{_tail(p.log, 25)}" for p in [*self.workers, self.api] if p]
        return "\n".join(parts)


@dataclass
class Verdict:
    jobs: int
    stuck: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    unfinished: int = 0
    attempts: dict[str, int] = field(default_factory=dict)
    answers: Counter[str] = field(default_factory=Counter)

    @property
    def bad_answers(self) -> dict[str, int]:
        """Answers a client must never see: any 5xx but 503, any other error status."""
        ok = {"200", "304", "503"}
        return {k: v for k, v in self.answers.items() if k.isdigit() and k not in ok}

    @property
    def transport_errors(self) -> dict[str, int]:
        return {k: v for k, v in self.answers.items() if not k.isdigit()}


async def _events(response: httpx.Response) -> Any:
    """The server-sent events of a response as they arrive (comments skipped)."""
    kind, event_id, data = "message", None, []
    async for line in response.aiter_lines():
        if line == "":
            if data:
                yield Event(kind, event_id, json.loads("\n".join(data)))
            kind, event_id, data = "message", None, []
        elif line.startswith("event:"):
            kind = line[6:].strip()
        elif line.startswith("id:"):
            event_id = line[3:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())


def _transport_outcome(exc: httpx.TransportError) -> str:
    """What a failed poll met. ``ClosedBeforeAnswer``: the server closed the connection before
    sending a byte of an answer, the race of a server shutting down a kept-alive connection just
    as a request goes out on it (RFC 9112 9.3.1; browsers retry such a GET on a new connection).
    An answer cut off part-way is another error (an incomplete body)."""
    if isinstance(exc, httpx.RemoteProtocolError) and "without sending a response" in str(exc):
        return "ClosedBeforeAnswer"
    return type(exc).__name__


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(
            line[:300] for line in path.read_text(errors="replace").splitlines()[-lines:]
        )
    except OSError:
        return "(no log)"
