"""Real ID tokens from the Firebase Auth Emulator: accepted in emulator mode, and refused once
their user is disabled, deleted or signed out (FIREBASE_CHECK_REVOKED), of another tenant, or
signed in anonymously where that is not allowed.

Skipped, saying why, when the firebase CLI is not installed (``.ci/run`` installs it)."""

from __future__ import annotations

import logging

import pytest

from service.auth.tokens import TokenVerifier
from service.domain.errors import NotAuthenticated
from tests.support.auth_emulator import PROJECT

URL = "/api/v1/books/jobs/{}"
UNAUTHORIZED = {"detail": "Could not validate credentials"}


@pytest.fixture
def emulated_settings(settings, auth_emulator, monkeypatch):
    """Settings for emulator mode against the running emulator, with ``overrides``."""
    # Emulator mode is process-wide in firebase-admin: monkeypatch restores the environment.
    monkeypatch.setenv("FIREBASE_AUTH_EMULATOR_HOST", auth_emulator.host)

    def make(**overrides):
        return settings.model_copy(
            update={
                "firebase_auth_emulator_host": auth_emulator.host,
                "firebase_project_id": PROJECT,
                **overrides,
            }
        )

    return make


@pytest.fixture
def get_job(other_app, emulated_settings, job_factory):
    """``await get_job(id_token, **settings)``: GET a job of the token's user, return the response."""

    async def get(user_id: str, id_token: str, **overrides):
        job = await job_factory(user_id=user_id)
        async with other_app(emulated_settings(**overrides)) as client:
            return await client.get(
                URL.format(job.job_id), headers={"Authorization": f"Bearer {id_token}"}
            )

    return get


@pytest.fixture
def rejections(caplog):
    caplog.set_level(logging.INFO, logger="service.auth")

    def reasons() -> list[str]:
        return [
            r.reason for r in caplog.records if r.name == "service.auth" and hasattr(r, "reason")
        ]

    return reasons


async def test_emulator_id_token_is_accepted(auth_emulator, get_job):
    user = await auth_emulator.sign_up()

    response = await get_job(user.user_id, user.id_token)

    assert response.status_code == 200
    assert response.json()["user_id"] == user.user_id


async def test_disabled_user_is_refused_when_revocation_is_checked(
    auth_emulator, get_job, rejections
):
    user = await auth_emulator.sign_up()
    await auth_emulator.disable(user.user_id)

    unchecked = await get_job(user.user_id, user.id_token)
    checked = await get_job(user.user_id, user.id_token, firebase_check_revoked=True)

    assert unchecked.status_code == 200  # the token itself is still valid until its exp
    assert checked.status_code == 401
    assert checked.json() == UNAUTHORIZED
    assert rejections() == ["user disabled"]


async def test_deleted_user_is_refused_when_revocation_is_checked(
    auth_emulator, get_job, rejections
):
    user = await auth_emulator.sign_up()
    await auth_emulator.delete(user.user_id)

    response = await get_job(user.user_id, user.id_token, firebase_check_revoked=True)

    assert response.status_code == 401
    assert response.json() == UNAUTHORIZED
    assert rejections() == ["user deleted"]


async def test_revoked_token_is_refused_when_revocation_is_checked(
    auth_emulator, get_job, rejections
):
    user = await auth_emulator.sign_up()
    await auth_emulator.revoke(user.user_id)

    unchecked = await get_job(user.user_id, user.id_token)
    checked = await get_job(user.user_id, user.id_token, firebase_check_revoked=True)

    assert unchecked.status_code == 200
    assert checked.status_code == 401
    assert rejections() == ["revoked"]


async def test_revocation_answer_is_kept_per_token_for_the_recheck_interval(
    auth_emulator, emulated_settings
):
    user = await auth_emulator.sign_up()
    elapsed = [0.0]
    verifier = TokenVerifier(
        emulated_settings(firebase_check_revoked=True),
        recheck_after_s=60,
        monotonic=lambda: elapsed[0],
    )
    header = f"Bearer {user.id_token}"
    try:
        first = await verifier.authenticate(header)
        await auth_emulator.disable(user.user_id)
        within_interval = await verifier.authenticate(header)
        elapsed[0] = 60.1  # the recheck interval has passed
        with pytest.raises(NotAuthenticated):
            await verifier.authenticate(header)
    finally:
        verifier.close()

    assert first.user_id == within_interval.user_id == user.user_id


async def test_anonymous_user_is_refused_outside_the_allowed_providers(
    auth_emulator, get_job, rejections
):
    user = await auth_emulator.sign_up(anonymous=True)

    anyone = await get_job(user.user_id, user.id_token)
    password_only = await get_job(
        user.user_id, user.id_token, firebase_allowed_providers=["password", "google.com"]
    )

    assert anyone.status_code == 200
    assert password_only.status_code == 401
    assert password_only.json() == UNAUTHORIZED
    assert rejections() == ["provider"]


async def test_tenant_user_is_accepted_by_its_tenant_only(auth_emulator, get_job, rejections):
    tenant_id = await auth_emulator.create_tenant()
    other_tenant_id = await auth_emulator.create_tenant()
    member = await auth_emulator.sign_up(tenant_id=tenant_id)
    project_user = await auth_emulator.sign_up()

    # With revocation checked too: the user is looked up in the tenant, not the project.
    own_tenant = await get_job(
        member.user_id,
        member.id_token,
        firebase_tenant_id=tenant_id,
        firebase_check_revoked=True,
    )
    other_tenant = await get_job(
        member.user_id, member.id_token, firebase_tenant_id=other_tenant_id
    )
    no_tenant_configured = await get_job(member.user_id, member.id_token)
    no_tenant_token = await get_job(
        project_user.user_id, project_user.id_token, firebase_tenant_id=tenant_id
    )

    assert own_tenant.status_code == 200
    assert [other_tenant.status_code, no_tenant_configured.status_code] == [401, 401]
    assert no_tenant_token.status_code == 401
    assert rejections() == ["tenant", "tenant", "tenant"]


async def test_disabled_tenant_user_is_refused(auth_emulator, get_job, rejections):
    tenant_id = await auth_emulator.create_tenant()
    member = await auth_emulator.sign_up(tenant_id=tenant_id)
    await auth_emulator.disable(member.user_id, tenant_id=tenant_id)

    response = await get_job(
        member.user_id, member.id_token, firebase_tenant_id=tenant_id, firebase_check_revoked=True
    )

    assert response.status_code == 401
    assert rejections() == ["user disabled"]
