"""Ops endpoints: liveness (no I/O) and readiness (MongoDB and Redis answer quickly)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

import msgspec
from litestar import Response, get
from litestar.openapi import ResponseSpec

from service.api.http.dependencies import ServicesDep

READY_TIMEOUT_S = 1.0


class Health(msgspec.Struct):
    status: str


class Readiness(msgspec.Struct, omit_defaults=True):
    status: str
    checks: dict[str, str]
    detail: str | None = None


@get(
    "/health",
    summary="Liveness: the process serves HTTP",
    description="Always 200 while the process answers; it reads nothing. For a load balancer.",
    tags=["ops"],
)
async def health() -> Health:
    """No I/O: a failing liveness check must mean this process is wedged, not a dependency."""
    return Health(status="ok")


async def _check(probe: Awaitable[Any]) -> str:
    try:
        await asyncio.wait_for(probe, READY_TIMEOUT_S)
    except TimeoutError:
        return "timeout"
    except Exception:  # any failure of the dependency means "not ready"
        return "unreachable"
    return "ok"


@get(
    "/ready",
    summary="Readiness: MongoDB and Redis answer",
    description=(
        "200 when MongoDB and Redis each answer within a second; 503 naming each one that "
        "does not (`checks`). For a load balancer's readiness probe."
    ),
    tags=["ops"],
    responses={
        503: ResponseSpec(Readiness, generate_examples=False, description="A dependency is down")
    },
)
async def ready(services: ServicesDep) -> Response[Readiness]:
    """200 when every dependency answers within a second; 503 naming each one that does not."""
    mongodb, redis = await asyncio.gather(
        _check(services.store.ping()), _check(services.queue.ping())
    )
    checks = {"mongodb": mongodb, "redis": redis}
    failing = [name for name, result in checks.items() if result != "ok"]
    if failing:
        detail = "Not ready: " + ", ".join(f"{name} {checks[name]}" for name in failing)
        return Response(
            Readiness(status="unavailable", checks=checks, detail=detail),
            status_code=503,
            headers={"Cache-Control": "no-store", "Retry-After": "5"},
        )
    return Response(Readiness(status="ready", checks=checks), headers={"Cache-Control": "no-store"})
