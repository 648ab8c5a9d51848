"""service/auth/stream_tokens.py: one job, one user, a few minutes; and the secret production needs."""

from __future__ import annotations

from datetime import UTC, datetime

import pydantic
import pytest

from service.auth.stream_tokens import StreamTokenRejected, StreamTokens
from service.domain.errors import AccessDenied
from service.settings import Settings
from tests.conftest import PRODUCTION_SECRETS

JOB = "db67a850-1efd-41f7-88ed-b434ef108bc5"
NOW = 1_800_000_000.0


def _tokens(clock=lambda: NOW, secret=b"k" * 32, ttl_s=300):
    return StreamTokens(secret, ttl_s, clock=clock)


def test_a_token_names_its_user_for_its_job_until_it_expires():
    token, expires_at = _tokens().mint(JOB, "alice")

    assert _tokens().verify(token, JOB).user_id == "alice"
    assert expires_at == datetime.fromtimestamp(NOW + 300, UTC)
    assert _tokens(clock=lambda: NOW + 299).verify(token, JOB).user_id == "alice"
    with pytest.raises(StreamTokenRejected):
        _tokens(clock=lambda: NOW + 300).verify(token, JOB)


def test_a_token_for_another_job_is_access_denied():
    token, _ = _tokens().mint(JOB, "alice")

    with pytest.raises(AccessDenied):
        _tokens().verify(token, "5b1d0c2e-8f43-4d55-9a0f-1c2b3d4e5f60")


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),  # signature
        lambda t: t.replace("v1.", "v2.", 1),  # version
        lambda t: t.split(".", 1)[1],  # a part missing
        lambda t: t + ".x",  # a part too many
        lambda t: t + "A" * 3000,  # absurdly long
        lambda t: "",
    ],
)
def test_a_mangled_token_is_rejected(mangle):
    token, _ = _tokens().mint(JOB, "alice")

    with pytest.raises(StreamTokenRejected):
        _tokens().verify(mangle(token), JOB)


def test_a_token_signed_with_another_secret_is_rejected():
    token, _ = _tokens(secret=b"one secret").mint(JOB, "alice")

    with pytest.raises(StreamTokenRejected):
        _tokens(secret=b"another secret").verify(token, JOB)


def test_without_a_secret_development_signs_with_a_random_key_per_process():
    first = StreamTokens.from_settings(Settings())
    second = StreamTokens.from_settings(Settings())
    token, _ = first.mint(JOB, "alice")

    assert first.verify(token, JOB).user_id == "alice"
    with pytest.raises(StreamTokenRejected):
        second.verify(token, JOB)


@pytest.mark.parametrize("secret", [None, "too-short"])
def test_production_refuses_to_start_without_a_long_secret(secret):
    with pytest.raises(pydantic.ValidationError, match="STREAM_TOKEN_SECRET"):
        Settings(
            app_env="production",
            firebase_project_id="real-project",
            **{**PRODUCTION_SECRETS, "stream_token_secret": secret},
        )


def test_settings_cap_the_token_lifetime_at_ten_minutes():
    assert Settings(stream_token_ttl_s=600).stream_token_ttl_s == 600
    with pytest.raises(pydantic.ValidationError, match="stream_token_ttl_s"):
        Settings(stream_token_ttl_s=601)
