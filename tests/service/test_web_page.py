"""The browser page's routes: /, its files under /web/, /config.json; its security policy; and
that none of them is in the API's schema."""

from __future__ import annotations

import re

import pydantic
import pytest

from service.api.app import create_app
from service.api.routes.web_page import (
    DEFAULT_VENDOR_DIR,
    FIREBASE_SDK,
    WEB_DIR,
    content_security_policy,
    load_vendor,
    page_config,
)
from service.settings import Settings

from ..conftest import PROJECT_ID

# `make web-vendor` ran (make test and .ci/run run it); without npm, what needs it is skipped.
VENDORED = all(name in load_vendor(DEFAULT_VENDOR_DIR) for name in FIREBASE_SDK)


async def test_index_is_the_page_with_a_policy_that_allows_no_inline_script(client):
    response = await client.get("/")

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert '<script type="module" src="/web/app.js"></script>' in response.text
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy
    assert "unsafe-eval" not in policy
    assert "frame-ancestors 'none'" in policy


async def test_page_files_are_served_with_their_types(client):
    script = await client.get("/web/app.js")
    style = await client.get("/web/style.css")

    assert script.status_code == 200
    assert script.headers["content-type"] == "text/javascript; charset=utf-8"
    assert script.text == (WEB_DIR / "app.js").read_text()
    assert style.headers["content-type"] == "text/css; charset=utf-8"


@pytest.mark.parametrize(
    "path",
    ["/web/missing.js", "/web/__init__.py", "/web/..%2Fsettings.py", "/web/%2e%2e%2fapp.py"],
)
async def test_only_the_page_files_are_served(client, path):
    response = await client.get(path)

    assert response.status_code == 404
    assert response.json()["detail"] in {"No such file", "Not Found"}


async def test_config_says_how_to_sign_in(client):
    response = await client.get("/config.json")

    assert response.status_code == 200
    assert response.json() == {
        "app_env": "development",
        "dev_sign_in": False,  # the test settings verify real signatures
        "firebase_project_id": PROJECT_ID,
        "firebase": None,
        "poll_interval_s": 2,
        "firebase_sdk": VENDORED,
        "firebase_emulator_url": None,
        "page_dpi": 150,
    }


def test_config_offers_development_sign_in_only_in_emulator_mode(settings):
    emulated = settings.model_copy(update={"firebase_auth_emulator_host": "127.0.0.1:9099"})

    assert page_config(emulated).dev_sign_in is True
    assert page_config(settings).dev_sign_in is False


def test_production_sign_in_config_and_policy_name_firebase(settings):
    configured = settings.model_copy(
        update={"firebase_web_api_key": "AIzaSyExample_key-1", "firebase_auth_domain": None}
    )

    config = page_config(configured)
    policy = content_security_policy(configured)

    assert config.firebase is not None
    assert (config.firebase.api_key, config.firebase.auth_domain, config.firebase.project_id) == (
        "AIzaSyExample_key-1",
        f"{PROJECT_ID}.firebaseapp.com",
        PROJECT_ID,
    )
    # The SDK is served from this origin: only Google sign-in's own loader comes from Google.
    assert "script-src 'self' https://apis.google.com;" in policy
    assert "gstatic" not in policy
    assert f"frame-src https://{PROJECT_ID}.firebaseapp.com" in policy
    assert "https://identitytoolkit.googleapis.com" in policy
    assert "google" not in content_security_policy(settings)
    assert config.firebase_emulator_url is None


def test_sign_in_against_the_auth_emulator_talks_to_it_and_nothing_of_google(settings):
    emulated = settings.model_copy(
        update={
            "firebase_web_api_key": "fake-api-key",
            "firebase_auth_emulator_host": "127.0.0.1:9099",
        }
    )

    config = page_config(emulated)
    policy = content_security_policy(emulated)

    assert config.firebase_emulator_url == "http://127.0.0.1:9099"
    assert config.dev_sign_in is True
    assert "connect-src 'self' http://127.0.0.1:9099;" in policy
    assert "script-src 'self';" in policy
    assert "google" not in policy


def test_policy_allows_images_from_where_page_images_are_served(settings):
    s3 = settings.model_copy(
        update={
            "page_store": "s3",
            "s3_bucket": "pages",
            "s3_endpoint_url": "http://127.0.0.1:8333",
            "page_public_base_url": "https://cdn.example.com/pages",
        }
    )

    images = re.search(r"img-src ([^;]*)", content_security_policy(s3))

    assert images is not None
    assert images.group(1).split() == [
        "'self'",
        "data:",
        "https://cdn.example.com",
        "http://127.0.0.1:8333",
    ]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("FIREBASE_AUTH_DOMAIN", "evil.example.com; script-src *"),
        ("FIREBASE_AUTH_DOMAIN", "https://x.firebaseapp.com"),
        ("FIREBASE_WEB_API_KEY", "key with spaces"),
    ],
)
def test_web_config_that_would_break_the_policy_is_refused(monkeypatch, name, value):
    monkeypatch.setenv(name, value)

    with pytest.raises(pydantic.ValidationError, match=name.lower()):
        Settings()


def test_page_routes_are_not_in_the_schema():
    paths = create_app(Settings()).openapi_schema.paths or {}

    assert not [
        path for path in paths if not path.startswith(("/api/", "/health", "/ready", "/metrics"))
    ]


def test_page_scripts_never_parse_server_text_as_html():
    scripts = {path.name: path.read_text() for path in WEB_DIR.glob("*.js")}

    offenders = {
        name
        for name, source in scripts.items()
        if re.search(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(", source)
    }

    assert set(scripts) >= {"app.js", "api.js", "auth.js", "watch.js", "viewer.js", "jobs.js"}
    assert offenders == set()
