"""Worker identities and liveness records (worker/identity.py, worker/liveness.py): a slot is
held exactly as long as its process lives, SIGSTOPped or not; a worker started in a dead one's
slot hands back its jobs at once. Real processes and a real mongod."""

from __future__ import annotations

import signal
import subprocess
import sys
from datetime import timedelta

from service.domain import lifecycle
from service.domain.job import JobStatus, utcnow
from service.store.doorbell import create_queue
from tests.conftest import REPO_ROOT
from worker.identity import take_identity
from worker.liveness import come_alive, stop_living

HOLD_A_SLOT = """
import sys, time
from service.settings import Settings
from worker.identity import take_identity
settings = Settings(mongodb_url=sys.argv[2], mongodb_db=sys.argv[3])
identity = take_identity(settings, directory=sys.argv[1])
print(identity.slot, flush=True)
time.sleep(600)
"""


def test_each_live_worker_has_its_own_slot_and_a_freed_slot_is_taken_first(settings, tmp_path):
    first = take_identity(settings, directory=str(tmp_path), host="h")
    second = take_identity(settings, directory=str(tmp_path), host="h")
    first.release()

    third = take_identity(settings, directory=str(tmp_path), host="h")

    assert (first.slot, second.slot, third.slot) == (0, 1, 0)
    assert third.worker_id == "h/0"
    assert third.incarnation != first.incarnation
    second.release()
    third.release()


def test_a_stopped_worker_keeps_its_slot_and_a_killed_one_gives_it_up(settings, tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_A_SLOT, str(tmp_path), settings.mongodb_url, settings.mongodb_db],
        cwd=REPO_ROOT, stdout=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == b"0"
        holder.send_signal(signal.SIGSTOP)
        while_stopped = take_identity(settings, directory=str(tmp_path))
        holder.kill()
        holder.wait(10)
        after_death = take_identity(settings, directory=str(tmp_path))
    finally:
        holder.kill()
        holder.wait(10)
        holder.stdout.close()

    assert while_stopped.slot == 1  # judged by its record going stale, never by a guess
    assert after_death.slot == 0  # the dead one's identity, and its leases with it
    while_stopped.release()
    after_death.release()


async def test_a_worker_started_in_a_dead_ones_slot_hands_back_its_jobs_at_once(
    app, store, collections, job_factory, settings, queue, tmp_path, monkeypatch
):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    slot = take_identity(settings)  # the dead worker's slot, given back when it died
    mine, theirs = slot.worker_id, f"{slot.host}/7"
    slot.release()
    fresh = utcnow() - timedelta(seconds=1)  # no heartbeat stale, no record stale
    held = await job_factory(
        status=JobStatus.processing, lease_id="l-1", attempts=1, worker_id=mine, heartbeat_at=fresh
    )
    elsewhere = await job_factory(
        status=JobStatus.processing, lease_id="l-2", attempts=1, worker_id=theirs,
        heartbeat_at=fresh,
    )  # fmt: skip
    ctx = {"settings": settings, "store": store, "redis": create_queue(settings)}

    try:
        await come_alive(ctx)
        record = await collections.workers.find_one({"_id": mine})
    finally:
        await stop_living(ctx)
        await ctx["redis"].aclose(close_connection_pool=True)

    handed = await collections.jobs.find_one({"job_id": held.job_id})
    assert ctx["worker_id"] == mine
    assert (handed["status"], handed["lease_id"], handed["lost_runs"]) == ("pending", None, 1)
    assert (await collections.jobs.find_one({"job_id": elsewhere.job_id}))["status"] == "processing"
    assert await queue.zcard("arq:queue") == 1  # rung, for any worker to resume it
    assert record["incarnation"] == ctx["identity"].incarnation
    assert (await collections.workers.find_one({"_id": mine}))["stopped_at"] is not None


async def test_a_claim_carries_the_worker_that_holds_the_lease(apply, job_factory):
    job = await job_factory()

    claimed = await apply(lifecycle.claim(job.job_id, "m", utcnow(), "host-a/0"), {"worker_id": 1})

    assert claimed["worker_id"] == "host-a/0"
