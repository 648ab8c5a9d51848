"""The named lease the sweepers share: one holder at a time, renewable, expiring by itself."""

from __future__ import annotations

import pytest


@pytest.fixture
def locks(store):
    return store.locks


@pytest.fixture
def db(collections):
    return collections.locks


async def test_a_lock_held_by_one_is_refused_to_another(locks, db):
    first = await locks.acquire("sweeper", "worker-a", 60)

    second = await locks.acquire("sweeper", "worker-b", 60)

    assert (first, second) == (True, False)
    assert (await db.find_one({"_id": "sweeper"}))["holder"] == "worker-a"


async def test_its_holder_renews_it(locks, db):
    await locks.acquire("sweeper", "worker-a", 60)

    renewed = await locks.acquire("sweeper", "worker-a", 60)

    assert renewed is True
    assert await db.count_documents({}) == 1


async def test_an_expired_lock_goes_to_the_next_asker(locks, db):
    await locks.acquire("sweeper", "worker-a", 0)  # expires at once: a holder that died

    taken = await locks.acquire("sweeper", "worker-b", 60)

    assert taken is True
    assert (await db.find_one({"_id": "sweeper"}))["holder"] == "worker-b"


async def test_released_only_by_its_holder(locks, db):
    await locks.acquire("sweeper", "worker-a", 60)

    by_other = await locks.release("sweeper", "worker-b")
    still_held = await locks.acquire("sweeper", "worker-b", 60)
    by_holder = await locks.release("sweeper", "worker-a")
    taken = await locks.acquire("sweeper", "worker-b", 60)

    assert (by_other, still_held, by_holder, taken) == (False, False, True, True)


async def test_locks_of_other_names_are_independent(locks, db):
    await locks.acquire("sweeper", "worker-a", 60)

    other = await locks.acquire("reindex", "worker-b", 60)

    assert other is True
