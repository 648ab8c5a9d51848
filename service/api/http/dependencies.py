"""Dependencies injected into handlers: the app's services and the authenticated caller."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request
from litestar.datastructures import State
from litestar.di import Dependency
from litestar.params import SkipValidationMarker

from service.api.services import Services
from service.auth.tokens import Principal

# Handler parameter types: named dependencies, provided once on the app. Both are built by our
# own code, so Litestar's per-request msgspec validation of them (about a third of the polling
# endpoint's CPU time when measured) is skipped.
ServicesDep = Annotated[Services, Dependency(kind="named"), SkipValidationMarker()]
PrincipalDep = Annotated[Principal, Dependency(kind="named"), SkipValidationMarker()]


def provide_services(state: State) -> Services:
    services: Services = state.services
    return services


def services_of(request: Request[Any, Any, Any]) -> Services:
    """The services of the app serving ``request`` (what ``ServicesDep`` injects)."""
    services: Services = request.app.state.services
    return services


async def provide_principal(request: Request[Any, Any, Any]) -> Principal:
    """The caller; raises ``NotAuthenticated`` (401) without a valid Firebase ID token.

    It reads the services from the app rather than depending on ``services``: each resolved
    dependency costs Litestar a few microseconds, and a handler needing both would make Litestar
    resolve them concurrently in an anyio task group, which costs more than the whole lookup.
    """
    verifier = services_of(request).verifier
    return await verifier.authenticate(request.headers.get("authorization"))
