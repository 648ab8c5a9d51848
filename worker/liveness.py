"""This worker's liveness record, and what it does for a dead predecessor in its slot.

At start-up, before it takes a job (``come_alive``):

1. it takes its identity (``worker/identity.py``): its slot's lock proves that the worker which
   had this identity before is dead;
2. it hands back every job whose lease carries its identity: its predecessor's, killed while it
   ran them (released to ``pending`` and rung, or failed with ``worker lost`` on their
   ``JOB_MAX_ATTEMPTS``-th lost run, as the sweeper would), so a worker restarted by a
   supervisor after a SIGKILL has its jobs moving again within its own start-up;
3. it registers its record in ``workers`` (``service/store/workers.py``) and beats it every
   ``WORKER_STALE_S / 4`` from a task of its own, whatever its jobs are doing. The sweeper hands
   back the jobs of a worker whose record is older than ``WORKER_STALE_S``.

On a clean stop (``stop_living``) the record says so, which makes it stale at once: whatever the
worker could not hand back itself goes at the next sweep.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from service.domain.job import utcnow
from service.settings import Settings
from service.store.database import Store
from service.store.failure import is_transient
from worker.cancel import cancel_and_wait
from worker.dependency import MONGODB
from worker.identity import Identity, take_identity
from worker.run.patience import Patience
from worker.run.task import WORKER_ID
from worker.sweeper import hand_back_lost

log = logging.getLogger("worker.liveness")

IDENTITY = "identity"  # in ctx: this worker's Identity
BEATS_PER_PERIOD = 4  # beats per WORKER_STALE_S: one late beat never makes a live worker stale


async def come_alive(ctx: dict[str, Any]) -> None:
    """Take this worker's identity, hand back its dead predecessor's jobs, register, beat."""
    settings: Settings = ctx["settings"]
    store: Store = ctx["store"]
    identity = take_identity(settings)
    ctx[IDENTITY] = identity
    ctx[WORKER_ID] = identity.worker_id
    patience = Patience()
    if identity.slot is not None:
        handed = await patience.call(
            lambda: hand_back_predecessors(ctx, identity), "hand back the predecessor's jobs"
        )
        if handed:
            log.warning(
                "worker %s: its predecessor in this slot died holding %d jobs: handed back",
                identity.worker_id, handed,
            )  # fmt: skip
    await patience.call(
        lambda: store.workers.register(
            identity.worker_id, identity.incarnation,
            host=identity.host, slot=identity.slot, pid=identity.pid,
        ),
        "register the worker",
    )  # fmt: skip
    log.info("worker %s started (incarnation %s)", identity.worker_id, identity.incarnation)
    interval = settings.worker_stale_s / BEATS_PER_PERIOD
    ctx["liveness"] = asyncio.create_task(keep_beating(store, identity, interval), name="liveness")


async def hand_back_predecessors(ctx: dict[str, Any], identity: Identity) -> int:
    """Hand back the jobs a dead worker of this identity held; how many."""
    store: Store = ctx["store"]
    handed = 0
    async for doc in store.jobs.held_by([identity.worker_id], None):
        outcome = await hand_back_lost(store, ctx["redis"], ctx["settings"], doc, utcnow(), None)
        handed += outcome is not None
    return handed


async def keep_beating(store: Store, identity: Identity, interval_s: float) -> None:
    """Beat this worker's record every ``interval_s`` until cancelled."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            if not await store.workers.beat(identity.worker_id, identity.incarnation):
                # Only a worker under the same host name and temporary directory in another
                # namespace (two containers given one host name) can take this record.
                log.error(
                    "worker %s: another worker registered under this identity; give each "
                    "worker host its own host name",
                    identity.worker_id,
                )
            MONGODB.up()
        except Exception as exc:
            if not is_transient(exc):
                log.exception("worker %s: liveness beat failed", identity.worker_id)
            else:
                MONGODB.down(exc)


async def stop_living(ctx: dict[str, Any]) -> None:
    """Stop beating, say so in the record, and give the slot back."""
    task = ctx.pop("liveness", None)
    if task is not None:
        await cancel_and_wait(task)
    identity: Identity | None = ctx.get(IDENTITY)
    if identity is None:
        return
    if "store" in ctx:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2):
                await ctx["store"].workers.stopped(identity.worker_id, identity.incarnation)
    identity.release()
