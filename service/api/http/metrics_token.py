"""``/metrics`` behind a bearer token (``METRICS_TOKEN``), checked by a Litestar guard.

nginx used to open ``/metrics`` to private source addresses, which behind a load balancer on a
private network is everyone. The token is checked here instead, wherever the request comes from,
with a constant-time comparison so its bytes cannot be guessed from response times. Without
``METRICS_TOKEN`` (development) the endpoint is open; production refuses to start without one
(service/settings.py).
"""

from __future__ import annotations

import hmac
from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler

from service.api.services import Services
from service.domain.errors import MetricsTokenRequired


def require_metrics_token(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    """Guard: pass with the right bearer token (or none configured); 401 otherwise."""
    services: Services = connection.app.state.services
    token = services.settings.metrics_token
    if token is None:
        return
    scheme, _space, sent = connection.headers.get("authorization", "").partition(" ")
    expected = token.get_secret_value().encode()
    # compare_digest on bytes: any header the client sends, ASCII or not, is compared, not raised.
    if scheme.lower() != "bearer" or not hmac.compare_digest(sent.strip().encode(), expected):
        raise MetricsTokenRequired
