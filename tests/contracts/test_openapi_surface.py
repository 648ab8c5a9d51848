"""The OpenAPI document only grows: every path, method, response code and schema it had when
``openapi_surface.json`` was recorded is still there (a client generated from it keeps working).

Record a new surface only when the API gains something: ``python -m
tests.contracts.test_openapi_surface > tests/contracts/openapi_surface.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from service.api.app import create_app
from service.settings import Settings

RECORDED = Path(__file__).with_name("openapi_surface.json")
METHODS = {"get", "post", "put", "patch", "delete"}


def surface() -> dict[str, Any]:
    """Paths -> methods -> response codes, and the schema names, of the app's document."""
    document = create_app(Settings()).openapi_schema.to_schema()
    paths: dict[str, dict[str, list[str]]] = {}
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                paths.setdefault(path, {})[method] = sorted(operation.get("responses", {}))
    return {"paths": paths, "schemas": sorted(document["components"]["schemas"])}


def test_every_recorded_path_method_and_response_code_is_still_served():
    recorded = json.loads(RECORDED.read_text())
    current = surface()["paths"]

    lost = [
        f"{method.upper()} {path} {code}"
        for path, methods in recorded["paths"].items()
        for method, codes in methods.items()
        for code in codes
        if code not in current.get(path, {}).get(method, [])
    ]

    assert lost == []


def test_every_recorded_schema_is_still_in_the_document():
    recorded = json.loads(RECORDED.read_text())

    assert set(recorded["schemas"]) - set(surface()["schemas"]) == set()


if __name__ == "__main__":
    print(json.dumps(surface(), indent=1, sort_keys=True))
