"""The one backoff policy: doubling delays, bounded, jittered on demand, and a test mode in which
waiting takes no time while the code under test keeps its own loop."""

from __future__ import annotations

from itertools import islice

import pytest

from service import backoff
from service.backoff import Backoff


def test_delays_double_from_first_up_to_max():
    delays = list(islice(Backoff(first_s=0.1, max_s=1.0).delays(), 6))

    assert delays == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])


def test_after_gives_the_next_delay():
    policy = Backoff(first_s=1.0, max_s=30.0)

    assert [policy.after(None), policy.after(1.0), policy.after(16.0), policy.after(30.0)] == [
        1.0, 2.0, 30.0, 30.0,
    ]  # fmt: skip


def test_full_jitter_stays_within_zero_and_the_delay():
    delays = list(islice(Backoff(first_s=1.0, max_s=1.0, jitter=1.0).delays(), 200))

    assert all(0.0 <= delay <= 1.0 for delay in delays)
    assert len(set(delays)) > 100  # spread, not one value


@pytest.mark.parametrize(
    "arguments", [{"first_s": 0}, {"first_s": 2, "max_s": 1}, {"factor": 0.5}, {"jitter": 1.5}]
)
def test_a_policy_that_cannot_back_off_is_refused(arguments):
    with pytest.raises(ValueError):
        Backoff(**arguments)


async def test_instant_makes_pauses_take_no_time_and_restores_them(monkeypatch):
    asked: list[float] = []

    async def sleep(seconds: float) -> None:
        asked.append(seconds)

    monkeypatch.setattr(backoff.asyncio, "sleep", sleep)
    with backoff.instant():
        await backoff.pause(10.0)
    await backoff.pause(0.5)

    assert asked == [0.0, 0.5]  # the loop still turns under instant(), and real waits come back
