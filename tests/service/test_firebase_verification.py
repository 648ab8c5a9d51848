"""Firebase verification that holds up in production: a slow or dead Google, clock drift, tenants,
sign-in providers, and a logged reason for every rejection. RS256 tokens signed here, checked by
firebase-admin against a local certificate server (tests/support/firebase_certs.py)."""

from __future__ import annotations

import asyncio
import logging
import time

import firebase_admin._token_gen
import pydantic
import pytest

from devstack.embedded import free_port
from service.auth.tokens import TokenVerifier
from service.domain.errors import DependencyUnavailable, NotAuthenticated
from service.logs import JsonFormatter
from service.settings import Settings
from tests.conftest import PROJECT_ID
from tests.service.test_auth import _bad_tokens
from tests.support.firebase_certs import CertServer

URL = "/api/v1/books/jobs/{}"
UNAUTHORIZED = {"detail": "Could not validate credentials"}
UNAVAILABLE = {
    "detail": "Service temporarily unavailable: authentication is unreachable, retry later"
}


@pytest.fixture
def hanging_cert_server(monkeypatch):
    """Google's certificate endpoint accepting connections and never answering."""
    server = CertServer(PROJECT_ID, hanging=True)
    monkeypatch.setattr(firebase_admin._token_gen, "ID_TOKEN_CERT_URI", server.url)
    yield server
    server.close()


@pytest.fixture
def rejections(caplog):
    """The reasons logged for rejected tokens, in order."""
    caplog.set_level(logging.INFO, logger="service.auth")

    def reasons() -> list[str]:
        return [
            r.reason for r in caplog.records if r.name == "service.auth" and hasattr(r, "reason")
        ]

    return reasons


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _authenticate(settings: Settings, token: str, **options):
    verifier = TokenVerifier(settings, **options)
    try:
        return await verifier.authenticate(f"Bearer {token}")
    finally:
        verifier.close()


# --- Google slow or down -------------------------------------------------------------------


async def test_hanging_certificate_server_gives_all_concurrent_requests_503_after_one_fetch(
    other_app, settings, job_factory, hanging_cert_server
):
    job = await job_factory(user_id="alice")
    quick = settings.model_copy(update={"firebase_http_timeout_s": 1.0})
    tokens = [hanging_cert_server.token(f"user-{n}") for n in range(50)]

    async with other_app(quick) as client:
        responses = await asyncio.gather(
            *(client.get(URL.format(job.job_id), headers=_bearer(token)) for token in tokens)
        )

    assert [r.status_code for r in responses] == [503] * 50
    assert all(r.json() == UNAVAILABLE for r in responses)
    assert all(int(r.headers["Retry-After"]) >= 1 for r in responses)
    # One request went to Google; the other 49 waited for its outcome, then were told to retry.
    assert hanging_cert_server.fetches <= 2


async def test_failed_certificate_fetch_is_remembered_then_tried_again(
    settings, hanging_cert_server
):
    verifier = TokenVerifier(
        settings.model_copy(update={"firebase_http_timeout_s": 0.5}), failure_memory_s=0.5
    )
    header = f"Bearer {hanging_cert_server.token('alice')}"
    try:
        with pytest.raises(DependencyUnavailable):
            await verifier.authenticate(header)
        with pytest.raises(DependencyUnavailable) as remembered:
            await verifier.authenticate(header)
        fetches_while_failing = hanging_cert_server.fetches

        hanging_cert_server.hanging = False  # Google is back
        await asyncio.sleep(0.6)
        principal = await verifier.authenticate(header)
    finally:
        verifier.close()

    assert fetches_while_failing == 1
    assert remembered.value.headers["Retry-After"] == "1"
    assert principal.user_id == "alice"
    assert hanging_cert_server.fetches == 2


async def test_unreachable_certificate_server_is_503_not_401(settings, monkeypatch, cert_server):
    # Nothing listens on this port: connection refused.
    monkeypatch.setattr(
        firebase_admin._token_gen, "ID_TOKEN_CERT_URI", f"http://127.0.0.1:{free_port()}/certs"
    )

    with pytest.raises(DependencyUnavailable):
        await _authenticate(settings, cert_server.token("alice"))


async def test_verified_tokens_are_served_from_the_cache_while_google_is_down(
    settings, monkeypatch
):
    google = CertServer(PROJECT_ID, max_age_s=0)  # keys not cached: each new token fetches
    monkeypatch.setattr(firebase_admin._token_gen, "ID_TOKEN_CERT_URI", google.url)
    verifier = TokenVerifier(settings.model_copy(update={"firebase_http_timeout_s": 0.5}))
    alice = f"Bearer {google.token('alice')}"
    try:
        await verifier.authenticate(alice)
        google.hanging = True
        with pytest.raises(DependencyUnavailable):
            await verifier.authenticate(f"Bearer {google.token('bob')}")
        again = await verifier.authenticate(alice)
    finally:
        verifier.close()
        google.close()

    assert again.user_id == "alice"
    assert google.fetches == 2  # alice's and bob's: alice's second request asked nobody


async def test_hanging_user_lookup_gives_concurrent_requests_503_with_few_lookups(
    other_app, settings, job_factory, monkeypatch
):
    # Emulator mode with FIREBASE_CHECK_REVOKED: the user lookup goes to the "emulator", here a
    # server that never answers, as Identity Toolkit might not.
    identity_toolkit = CertServer(PROJECT_ID, hanging=True)
    host = identity_toolkit.url.removeprefix("http://").removesuffix("/certs")
    monkeypatch.setenv("FIREBASE_AUTH_EMULATOR_HOST", host)
    checking = settings.model_copy(
        update={
            "firebase_auth_emulator_host": host,
            "firebase_check_revoked": True,
            "firebase_http_timeout_s": 1.0,
        }
    )
    job = await job_factory(user_id="alice")
    tokens = [identity_toolkit.token(f"user-{n}") for n in range(50)]
    try:
        async with other_app(checking) as client:
            responses = await asyncio.gather(
                *(client.get(URL.format(job.job_id), headers=_bearer(t)) for t in tokens)
            )
    finally:
        identity_toolkit.close()

    assert [r.status_code for r in responses] == [503] * 50
    assert all(r.json() == UNAVAILABLE for r in responses)
    # USER_LOOKUPS (4) at once, each retried once by firebase-admin after its read timeout;
    # then the failure is remembered and nobody else asks.
    assert identity_toolkit.fetches <= 8


# --- Clock skew ----------------------------------------------------------------------------


async def test_token_issued_seconds_in_our_future_is_accepted_within_the_skew(
    client, job_factory, auth_headers
):
    job = await job_factory(user_id="alice")
    now = int(time.time())

    response = await client.get(
        URL.format(job.job_id), headers=auth_headers("alice", iat=now + 5, auth_time=now + 5)
    )

    assert response.status_code == 200


async def test_token_issued_in_our_future_is_rejected_without_skew(
    settings, cert_server, rejections
):
    now = int(time.time())
    token = cert_server.token("alice", iat=now + 5, auth_time=now + 5)

    with pytest.raises(NotAuthenticated):
        await _authenticate(settings.model_copy(update={"firebase_clock_skew_s": 0}), token)

    assert rejections() == ["issued in the future"]


async def test_skew_does_not_extend_a_token_past_its_exp(settings, cert_server, rejections):
    now = int(time.time())
    token = cert_server.token("alice", iat=now - 3600, exp=now - 2)

    with pytest.raises(NotAuthenticated):
        await _authenticate(settings, token)  # FIREBASE_CLOCK_SKEW_S is 10

    assert rejections() == ["expired"]


# --- Tenants and sign-in providers ---------------------------------------------------------


def _firebase(provider: str = "password", tenant: str | None = None) -> dict:
    claims: dict = {"identities": {}, "sign_in_provider": provider}
    if tenant is not None:
        claims["tenant"] = tenant
    return claims


async def test_tenant_token_is_accepted_by_its_tenant(settings, cert_server):
    token = cert_server.token("alice", firebase=_firebase(tenant="tenant-a"))

    principal = await _authenticate(
        settings.model_copy(update={"firebase_tenant_id": "tenant-a"}), token
    )

    assert principal.user_id == "alice"


@pytest.mark.parametrize(
    ("configured", "token_tenant"),
    [("tenant-a", "tenant-b"), ("tenant-a", None), (None, "tenant-a")],
)
async def test_token_of_another_tenant_is_rejected(
    other_app, settings, job_factory, cert_server, rejections, configured, token_tenant
):
    job = await job_factory(user_id="alice")
    token = cert_server.token("alice", firebase=_firebase(tenant=token_tenant))

    async with other_app(settings.model_copy(update={"firebase_tenant_id": configured})) as client:
        response = await client.get(URL.format(job.job_id), headers=_bearer(token))

    assert response.status_code == 401
    assert response.json() == UNAUTHORIZED
    assert rejections() == ["tenant"]


async def test_provider_outside_the_allowed_list_is_rejected(
    other_app, settings, job_factory, cert_server, rejections
):
    job = await job_factory(user_id="alice")
    only_password = settings.model_copy(update={"firebase_allowed_providers": ["password"]})
    anonymous = cert_server.token("alice", firebase=_firebase(provider="anonymous"))
    password = cert_server.token("alice", firebase=_firebase(provider="password"))

    async with other_app(only_password) as client:
        refused = await client.get(URL.format(job.job_id), headers=_bearer(anonymous))
        accepted = await client.get(URL.format(job.job_id), headers=_bearer(password))

    assert refused.status_code == 401
    assert refused.json() == UNAUTHORIZED
    assert accepted.status_code == 200
    assert rejections() == ["provider"]


async def test_any_provider_is_accepted_when_none_is_configured(settings, cert_server):
    token = cert_server.token("alice", firebase=_firebase(provider="anonymous"))

    principal = await _authenticate(settings, token)

    assert principal.user_id == "alice"


# --- Logged reasons ------------------------------------------------------------------------


REASONS = {
    "expired": "expired",
    "wrong_aud": "wrong audience",
    "wrong_iss": "wrong issuer",
    "bad_signature": "bad signature",
    "unknown_kid": "unknown key id",
    "alg_none": "no key id",
    "empty_sub": "bad subject",
    "garbage": "malformed",
    "garbage_three_parts": "malformed",
}


@pytest.mark.parametrize("case", sorted(REASONS))
async def test_rejection_reason_is_logged_without_the_token(
    client, job_factory, cert_server, caplog, rejections, case
):
    job = await job_factory(user_id="alice")
    token = _bad_tokens(cert_server)[case]

    response = await client.get(URL.format(job.job_id), headers=_bearer(token))

    assert response.status_code == 401
    assert response.json() == UNAUTHORIZED
    assert rejections() == [REASONS[case]]
    logged = "\n".join(JsonFormatter().format(record) for record in caplog.records)
    for secret in [token, *(part for part in token.split(".") if len(part) > 16)]:
        assert secret not in logged


async def test_missing_token_is_logged_with_its_reason(client, job_factory, rejections):
    job = await job_factory(user_id="alice")

    await client.get(URL.format(job.job_id))
    await client.get(URL.format(job.job_id), headers={"Authorization": "Basic YWxpY2U6eA=="})

    assert rejections() == ["no token", "not a bearer token"]


# --- Settings ------------------------------------------------------------------------------


def test_settings_have_production_safe_defaults():
    settings = Settings()

    assert settings.firebase_http_timeout_s == 5
    assert settings.firebase_clock_skew_s == 10
    assert settings.firebase_check_revoked is False
    assert settings.firebase_tenant_id is None
    assert settings.firebase_allowed_providers == []


def test_settings_read_the_firebase_options_from_the_environment(monkeypatch):
    monkeypatch.setenv("FIREBASE_ALLOWED_PROVIDERS", "password, google.com")
    monkeypatch.setenv("FIREBASE_TENANT_ID", "")
    monkeypatch.setenv("FIREBASE_CLOCK_SKEW_S", "60")

    settings = Settings()

    assert settings.firebase_allowed_providers == ["password", "google.com"]
    assert settings.firebase_tenant_id is None
    assert settings.firebase_clock_skew_s == 60


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("FIREBASE_CLOCK_SKEW_S", "61"),
        ("FIREBASE_CLOCK_SKEW_S", "-1"),
        ("FIREBASE_HTTP_TIMEOUT_S", "0"),
        ("FIREBASE_ALLOWED_PROVIDERS", "password google.com"),
    ],
)
def test_settings_refuse_bad_firebase_options(monkeypatch, name, value):
    monkeypatch.setenv(name, value)

    with pytest.raises(pydantic.ValidationError, match=name.lower()):
        Settings()


def test_check_revoked_in_production_mode_needs_google_credentials(settings, monkeypatch, tmp_path):
    # No Application Default Credentials anywhere: no key file, no gcloud login, no GCE.
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path))
    monkeypatch.setenv("NO_GCE_CHECK", "true")

    with pytest.raises(RuntimeError, match="FIREBASE_CHECK_REVOKED"):
        TokenVerifier(settings.model_copy(update={"firebase_check_revoked": True}))
