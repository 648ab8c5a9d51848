"""The breaker around blocking calls to Google: bounded threads, bounded waits, one retry an interval."""

from __future__ import annotations

import asyncio
import threading

import pytest

from service.auth.breaker import Breaker, DependencyFailed
from service.domain.errors import DependencyUnavailable


def _breaker(**overrides) -> Breaker:
    options = {"concurrency": 1, "deadline_s": 5.0, "failure_memory_s": 60.0}
    options.update(overrides)
    return Breaker("test dependency", shown_as="authentication", **options)


class Dependency:
    """A blocking call that counts its calls, fails on demand and can hang until released."""

    def __init__(self, *, fails: bool = False, hangs: bool = False) -> None:
        self.calls = 0
        self.fails = fails
        self.hangs = hangs
        self.release = threading.Event()

    def __call__(self) -> str:
        self.calls += 1
        if self.hangs:
            self.release.wait(timeout=30)
        if self.fails:
            raise DependencyFailed("down")
        return "answer"


async def test_breaker_returns_the_answer_of_a_healthy_dependency():
    dependency = Dependency()

    assert await _breaker().call(dependency) == "answer"
    assert dependency.calls == 1


async def test_breaker_remembers_a_failure_and_does_not_call_again_meanwhile():
    breaker = _breaker()
    dependency = Dependency(fails=True)

    with pytest.raises(DependencyUnavailable) as first:
        await breaker.call(dependency)
    with pytest.raises(DependencyUnavailable) as second:
        await breaker.call(dependency)

    assert dependency.calls == 1
    assert first.value.status_code == second.value.status_code == 503
    assert 1 <= int(second.value.headers["Retry-After"]) <= 60
    assert breaker.is_open


async def test_breaker_tries_again_once_the_failure_memory_has_passed():
    breaker = _breaker(failure_memory_s=0.2)
    dependency = Dependency(fails=True)
    with pytest.raises(DependencyUnavailable):
        await breaker.call(dependency)

    dependency.fails = False
    await asyncio.sleep(0.3)
    answer = await breaker.call(dependency)

    assert answer == "answer"
    assert dependency.calls == 2


async def test_concurrent_callers_of_a_failing_dependency_cause_one_call():
    breaker = _breaker()
    dependency = Dependency(fails=True, hangs=True)

    calls = [asyncio.ensure_future(breaker.call(dependency)) for _ in range(50)]
    await asyncio.sleep(0.2)  # all 50 are waiting: one in the dependency, 49 for their turn
    dependency.release.set()
    results = await asyncio.gather(*calls, return_exceptions=True)

    assert all(isinstance(result, DependencyUnavailable) for result in results)
    assert dependency.calls == 1


async def test_a_hung_call_ends_at_the_deadline_and_opens_the_breaker():
    breaker = _breaker(deadline_s=0.3)
    dependency = Dependency(hangs=True)
    try:
        with pytest.raises(DependencyUnavailable):
            await breaker.call(dependency)
        with pytest.raises(DependencyUnavailable):
            await breaker.call(dependency)
    finally:
        dependency.release.set()

    assert dependency.calls == 1
    assert breaker.is_open


async def test_callers_waiting_behind_a_hung_call_end_at_their_deadline_too():
    breaker = _breaker(deadline_s=0.3, concurrency=2)
    dependency = Dependency(hangs=True)
    try:
        results = await asyncio.gather(
            *(breaker.call(dependency) for _ in range(10)), return_exceptions=True
        )
    finally:
        dependency.release.set()

    assert all(isinstance(result, DependencyUnavailable) for result in results)
    assert dependency.calls == 2  # the concurrency, not one a caller


async def test_a_verdict_passes_through_and_is_not_a_failure():
    breaker = _breaker()

    def reject() -> str:
        raise PermissionError("not you")

    with pytest.raises(PermissionError):
        await breaker.call(reject)

    assert not breaker.is_open
    assert await breaker.call(Dependency()) == "answer"
