"""The ledger of what each user stores: taken before a write, against the quota, all or none;
a key holds its latest size once; a prefix gives back exactly what was taken under it."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from service.domain.errors import StorageQuotaExceeded
from service.store.usage import Holding, Usage

QUOTA = 10_000


@pytest.fixture
def alice() -> str:
    """A user of this test alone: a test that leaves no app fixture (the nginx tests) leaves its
    uploads to the next clean-up, and a test counting a user's bytes must not see them."""
    return f"alice-{uuid.uuid4().hex}"


@pytest.fixture
def bob() -> str:
    return f"bob-{uuid.uuid4().hex}"


def held(key: str, size: int) -> Holding:
    return Holding(f"chapters/c-1/{key}", size, "page")


async def test_a_take_counts_and_a_retake_of_a_key_holds_its_new_size_once(store, alice, bob):
    await store.usage.take(alice, [held("page-1.webp", 3000), held("thumb-1.webp", 200)], QUOTA)
    await store.usage.take(alice, [held("page-1.webp", 1000)], QUOTA)

    assert await store.usage.stored_bytes(alice) == 1200
    assert await store.usage.stored_bytes(bob) == 0


async def test_a_take_past_the_quota_takes_nothing_of_it(store, alice):
    await store.usage.take(alice, [held("page-1.webp", 6000)], QUOTA)

    with pytest.raises(StorageQuotaExceeded) as refused:
        await store.usage.take(
            alice, [held("page-2.webp", 3000), held("page-3.webp", 3000)], QUOTA, "these pages"
        )

    assert "these pages does not fit" in refused.value.detail
    assert await store.usage.stored_bytes(alice) == 6000
    assert await store.usage.held("chapters/c-1/") == 6000


async def test_racing_takes_of_two_processes_never_pass_the_quota(store, alice):
    processes = [store.usage, Usage(store.collections)]  # each with its own turns
    takes = [processes[n % 2].take(alice, [held(f"page-{n}.webp", 1500)], QUOTA) for n in range(12)]

    results = await asyncio.gather(*takes, return_exceptions=True)

    fitted = [result for result in results if result is None]
    assert len(fitted) == QUOTA // 1500
    assert all(isinstance(r, StorageQuotaExceeded) for r in results if r is not None)
    assert await store.usage.stored_bytes(alice) == len(fitted) * 1500


async def test_giving_back_a_prefix_returns_exactly_what_each_user_took_there(
    store, monkeypatch, alice, bob
):
    monkeypatch.setattr("service.store.usage.GIVE_BACK_BATCH", 7)  # several transactions
    many = [Holding(f"chapters/c-1/text-{n}", n, "text") for n in range(1, 31)]
    await store.usage.take(alice, many, QUOTA)
    await store.usage.take(alice, [Holding("chapters/c-2/page-1.webp", 50, "page")], QUOTA)
    await store.usage.take(bob, [Holding("chapters/c-3/page-1.webp", 70, "page")], QUOTA)

    given = await store.usage.give_back("chapters/c-1/")
    again = await store.usage.give_back("chapters/c-1/")

    assert given == sum(range(1, 31))
    assert again == 0
    assert await store.usage.stored_bytes(alice) == 50
    assert await store.usage.stored_bytes(bob) == 70
