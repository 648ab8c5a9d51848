"""Firebase ID tokens: the production path (RS256 + certificates) and emulator mode."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time

import pydantic
import pytest

from devstack.token import emulator_token
from service.auth.tokens import TokenVerifier
from service.domain.errors import NotAuthenticated
from service.settings import Settings
from tests.conftest import PROJECT_ID, REPO_ROOT
from tests.support.firebase_certs import SigningKey

URL = "/api/v1/books/jobs/{}"
UNAUTHORIZED = {"detail": "Could not validate credentials"}


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _bad_tokens(cert_server) -> dict[str, str | None]:
    now = int(time.time())
    claims = cert_server.claims("alice")
    return {
        "expired": cert_server.token("alice", iat=now - 7200, exp=now - 3600),
        "wrong_aud": cert_server.token("alice", aud="another-project"),
        "wrong_iss": cert_server.token("alice", iss="https://securetoken.google.com/another"),
        "bad_signature": SigningKey(cert_server.key.kid).sign(claims),
        "unknown_kid": cert_server.key.sign(claims, kid="no-such-kid"),
        "alg_none": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}.",
        "empty_sub": cert_server.token("alice", sub=""),
        "garbage": "definitely-not-a-jwt",
        "garbage_three_parts": "a.b.c",
    }


@pytest.mark.parametrize(
    "case",
    [
        "expired",
        "wrong_aud",
        "wrong_iss",
        "bad_signature",
        "unknown_kid",
        "alg_none",
        "empty_sub",
        "garbage",
        "garbage_three_parts",
    ],
)
async def test_get_job_with_invalid_token_is_401(client, job_factory, cert_server, case):
    job = await job_factory(user_id="alice")
    token = _bad_tokens(cert_server)[case]

    response = await client.get(
        URL.format(job.job_id), headers={"Authorization": f"Bearer {token}"}
    )

    assert response.status_code == 401
    assert response.json() == UNAUTHORIZED
    assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": "Basic YWxpY2U6eA=="},
    ],
)
async def test_get_job_without_bearer_token_is_401(client, job_factory, headers):
    job = await job_factory(user_id="alice")

    response = await client.get(URL.format(job.job_id), headers=headers)

    assert response.status_code == 401
    assert response.json() == UNAUTHORIZED
    assert response.headers["WWW-Authenticate"] == "Bearer"


async def test_unknown_job_without_token_is_401_not_404(client):
    response = await client.get(URL.format("db67a850-1efd-41f7-88ed-b434ef108bc5"))

    assert response.status_code == 401


async def test_verifier_caches_claims_per_token(settings, cert_server):
    verifier = TokenVerifier(settings)
    header = f"Bearer {cert_server.token('alice')}"
    try:
        first = await verifier.authenticate(header)
        second = await verifier.authenticate(header)
        other = await verifier.authenticate(f"Bearer {cert_server.token('bob')}")
    finally:
        verifier.close()

    assert first.user_id == "alice"
    assert second is first  # served from the cache, not verified again
    assert other.user_id == "bob"


async def test_verifier_cache_is_bounded(settings, cert_server):
    verifier = TokenVerifier(settings.model_copy(update={"auth_cache_size": 2}))
    tokens = [f"Bearer {cert_server.token(user)}" for user in ("a", "b", "c")]
    try:
        first = await verifier.authenticate(tokens[0])
        for token in tokens[1:]:
            await verifier.authenticate(token)
        again = await verifier.authenticate(tokens[0])
    finally:
        verifier.close()

    assert again == first
    assert again is not first  # evicted (oldest of three in a cache of two), verified anew


async def test_verifier_does_not_serve_a_cached_token_past_its_exp(settings, cert_server):
    now = int(time.time())
    clock = [float(now)]
    verifier = TokenVerifier(settings, clock=lambda: clock[0])
    header = f"Bearer {cert_server.token('alice', exp=now + 600)}"
    try:
        assert (await verifier.authenticate(header)).user_id == "alice"
        clock[0] = now + 600.5  # the token's exp has passed (for us; Google's clock agrees later)
        with pytest.raises(NotAuthenticated):
            await verifier.authenticate(header)
    finally:
        verifier.close()


@pytest.fixture
async def emulator_client(settings, monkeypatch, other_app):
    # Emulator mode is process-wide in firebase-admin: monkeypatch restores the environment.
    monkeypatch.setenv("FIREBASE_AUTH_EMULATOR_HOST", "127.0.0.1:9099")
    emulated = settings.model_copy(update={"firebase_auth_emulator_host": "127.0.0.1:9099"})
    async with other_app(emulated) as client:
        yield client


async def test_emulator_mode_accepts_development_tokens(emulator_client, job_factory):
    job = await job_factory(user_id="alice")
    token = emulator_token("alice", PROJECT_ID)

    response = await emulator_client.get(
        URL.format(job.job_id), headers={"Authorization": f"Bearer {token}"}
    )

    assert response.status_code == 200
    assert response.json()["user_id"] == "alice"


async def test_emulator_mode_still_rejects_expired_tokens(emulator_client, job_factory):
    job = await job_factory(user_id="alice")
    token = emulator_token("alice", PROJECT_ID, lifetime_s=-60)

    response = await emulator_client.get(
        URL.format(job.job_id), headers={"Authorization": f"Bearer {token}"}
    )

    assert response.status_code == 401
    assert response.json() == UNAUTHORIZED


async def test_production_path_rejects_development_tokens(client, job_factory):
    job = await job_factory(user_id="alice")
    token = emulator_token("alice", PROJECT_ID)

    response = await client.get(
        URL.format(job.job_id), headers={"Authorization": f"Bearer {token}"}
    )

    assert response.status_code == 401


def test_settings_refuse_emulator_mode_in_production():
    with pytest.raises(pydantic.ValidationError, match="FIREBASE_AUTH_EMULATOR_HOST"):
        Settings(
            app_env="production",
            firebase_project_id="real-project",
            firebase_auth_emulator_host="127.0.0.1:9099",
        )


def test_service_refuses_to_start_in_production_with_emulator_env():
    env = {
        "PATH": "/usr/bin:/bin",
        "APP_ENV": "production",
        "FIREBASE_PROJECT_ID": "real-project",
        "FIREBASE_AUTH_EMULATOR_HOST": "127.0.0.1:9099",
    }

    result = subprocess.run(
        [sys.executable, "-c", "from service.api.app import app_factory; app_factory()"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode != 0
    assert "refuses to start" in result.stderr


def test_settings_refuse_demo_project_in_production():
    with pytest.raises(pydantic.ValidationError, match="FIREBASE_PROJECT_ID"):
        Settings(app_env="production", firebase_project_id="demo-pdf-chapter-jobs")
