"""The named lease the sweepers share: one holder at a time, renewable, expiring by itself."""

from __future__ import annotations

import pytest

from service.store import lock


@pytest.fixture
def db(app):
    return app.state.services.mongo.db


async def test_a_lock_held_by_one_is_refused_to_another(db):
    first = await lock.acquire(db, "sweeper", "worker-a", 60)

    second = await lock.acquire(db, "sweeper", "worker-b", 60)

    assert (first, second) == (True, False)
    assert (await db[lock.LOCKS].find_one({"_id": "sweeper"}))["holder"] == "worker-a"


async def test_its_holder_renews_it(db):
    await lock.acquire(db, "sweeper", "worker-a", 60)

    renewed = await lock.acquire(db, "sweeper", "worker-a", 60)

    assert renewed is True
    assert await db[lock.LOCKS].count_documents({}) == 1


async def test_an_expired_lock_goes_to_the_next_asker(db):
    await lock.acquire(db, "sweeper", "worker-a", 0)  # expires at once: a holder that died

    taken = await lock.acquire(db, "sweeper", "worker-b", 60)

    assert taken is True
    assert (await db[lock.LOCKS].find_one({"_id": "sweeper"}))["holder"] == "worker-b"


async def test_released_only_by_its_holder(db):
    await lock.acquire(db, "sweeper", "worker-a", 60)

    by_other = await lock.release(db, "sweeper", "worker-b")
    still_held = await lock.acquire(db, "sweeper", "worker-b", 60)
    by_holder = await lock.release(db, "sweeper", "worker-a")
    taken = await lock.acquire(db, "sweeper", "worker-b", 60)

    assert (by_other, still_held, by_holder, taken) == (False, False, True, True)


async def test_locks_of_other_names_are_independent(db):
    await lock.acquire(db, "sweeper", "worker-a", 60)

    other = await lock.acquire(db, "reindex", "worker-b", 60)

    assert other is True
