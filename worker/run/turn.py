"""Whose turn: at most ``MAX_RUNNING_JOBS_PER_USER`` processing jobs per user, across workers.

A worker's job slots (``WORKER_CONCURRENCY``) are first come, first served: without a cap, one
user's two PDFs that hold a render process for minutes each took both slots of a worker, and
another user's one-page job waited 118.9 s for one. So a run first counts its owner's processing
jobs in MongoDB: at the cap, the job is left pending and the slot goes to the next doorbell. A
count and the claim it guards are two steps, so the run counts again once its claim landed; of
two runs racing for one user's last turn, at least one sees both claims and gives its job back
unstarted (``lifecycle.release(unclaimed=True)``: no attempt spent), and at worst both do.

A job left waiting is rung again when a run of its owner ends (``next_in_line``), and in any case
by the sweeper once its doorbell is ``PENDING_GRACE_S`` old. A user alone loses little: one job
spreads its pages over every render process of its worker.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time

from arq.connections import ArqRedis

from service.domain import lifecycle
from service.domain.job import utcnow
from service.settings import Settings
from service.store.database import Store
from service.store.doorbell import ring
from worker.run.patience import Patience

log = logging.getLogger("worker.run.turn")

# A run that gave its job back after racing another run of the same user rings it again after
# up to this long, so that two such runs do not race again in step.
RACE_JITTER_S = 1.0


async def has_turn(store: Store, settings: Settings, user_id: str, job_id: str) -> bool:
    """Whether ``user_id`` may start ``job_id``: fewer processing jobs than the cap besides it."""
    cap = settings.max_running_jobs_per_user
    return await store.jobs.count_running(user_id, cap, besides=job_id) < cap


async def give_back_unstarted(
    queue: ArqRedis, store: Store, patience: Patience, job_id: str, lease_id: str
) -> None:
    """Hand back a job this run claimed but must not run (its owner's turn was taken by a racing
    claim), as if it had never been claimed; ring it again after a random pause."""
    await patience.call(
        lambda: store.jobs.apply(
            lifecycle.release(job_id, utcnow(), lease_id=lease_id, unclaimed=True)
        ),
        "give the job back",
    )
    await asyncio.sleep(random.uniform(0, RACE_JITTER_S))  # noqa: S311 - spreading, not secrets
    await ring(queue, job_id, f"turn-{time.time_ns()}")


async def next_in_line(queue: ArqRedis, store: Store, user_id: str) -> None:
    """A run of ``user_id`` ended: ring their oldest pending job, which may have been waiting
    for this turn. Best effort: the sweeper rings a forgotten job anyway."""
    try:
        job_id = await store.jobs.next_pending(user_id)
        if job_id is not None:
            await ring(queue, job_id, f"turn-{time.time_ns()}")
    except Exception as exc:  # the job ended already; its follower is the sweeper's then
        log.warning("the next job of a user was not rung (%s)", type(exc).__name__)
