"""Production sign-in, for real: the Firebase Web SDK served by this API from its npm package (no
CDN), in Chromium, against the Firebase Auth Emulator; the API verifies the emulator's ID tokens.
Email and password: sign up, sign out, sign in again, a forced token refresh, and not one request
to anywhere but the API and the emulator."""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx
import pytest
from selenium.webdriver.common.by import By

from service.api.routes.web_page import DEFAULT_VENDOR_DIR, FIREBASE_SDK, load_vendor
from tests.browser.steps import displayed, list_reads, text_of, visible, wait
from tests.support.auth_emulator import PROJECT, required_in_ci
from tests.support.server import granian_api

PASSWORD = "correct-horse-battery"


@pytest.fixture
def firebase_api(app, settings, auth_emulator, tmp_path):
    """The API in emulator mode against the running Auth Emulator, with a web API key: the page
    signs in through the Firebase SDK it serves."""
    if not all(name in load_vendor(DEFAULT_VENDOR_DIR) for name in FIREBASE_SDK):
        required_in_ci("the Firebase Web SDK is not installed: make web-vendor")
    with granian_api(
        settings,
        PROJECT,
        tmp_path / "api.log",
        FIREBASE_AUTH_EMULATOR_HOST=auth_emulator.host,
        FIREBASE_WEB_API_KEY="fake-api-key",
    ) as port:
        yield f"http://127.0.0.1:{port}"


def fill(page, email: str) -> None:
    for field, value in (("email", email), ("password", PASSWORD)):
        element = page.find_element(By.ID, field)
        element.clear()
        element.send_keys(value)


def signed_in_as(page, email: str) -> None:
    wait(page, visible("app"), 60, "sign-in did not open the page")
    wait(page, lambda d: text_of(d, "who-name") == email, 30)
    wait(page, lambda d: list_reads(d) >= 1, 30, "the job list was never read")


def test_email_sign_up_sign_out_sign_in_and_refresh_through_the_sdk_served_here(
    page, firebase_api, auth_emulator
):
    email = "keeper@lighthouse.example"
    page.get(firebase_api + "/")
    wait(page, lambda d: displayed(d, "email"), 60, "no Firebase sign-in offered")

    fill(page, email)
    page.find_element(By.ID, "sign-up").click()
    signed_in_as(page, email)
    refresh_calls = (
        "return performance.getEntriesByType('resource')"
        ".filter(e => e.name.includes('securetoken.googleapis.com/v1/token')).length"
    )
    before_refresh = page.execute_script(refresh_calls)
    refreshed = page.execute_async_script(
        "const done = arguments[arguments.length - 1]; window.pcj.refreshToken().then(done)"
    )
    after_refresh = page.execute_script(refresh_calls)
    refreshed_count = page.execute_script("return window.pcj.auth.tokensRefreshed")
    reads = list_reads(page)
    page.find_element(By.ID, "refresh-jobs").click()
    wait(page, lambda d: list_reads(d) > reads, 30, "no read with the refreshed token")
    with_refreshed = httpx.get(
        firebase_api + "/api/v1/books/jobs/", headers={"Authorization": f"Bearer {refreshed}"}
    )
    page.find_element(By.ID, "sign-out").click()
    wait(page, visible("sign-in"), 30)
    page.refresh()  # the SDK's stored session is gone too
    wait(page, lambda d: displayed(d, "email"), 60)
    after_reload = displayed(page, "app")
    fill(page, email)
    page.find_element(By.ID, "password-sign-in-button").click()
    signed_in_as(page, email)
    origins = page.execute_script(
        "return [location.href, ...performance.getEntriesByType('resource').map(e => e.name)]"
    )
    wrong = page.find_element(By.ID, "password")

    # A new ID token from the emulator's token endpoint (securetoken), for the refresh token.
    assert after_refresh == before_refresh + 1
    assert refreshed_count == 1
    assert with_refreshed.status_code == 200  # the API verified the emulator's token
    assert not after_reload
    assert not displayed(page, "error")
    api, emulator = urlsplit(firebase_api).netloc, auth_emulator.host
    assert {urlsplit(url).netloc for url in origins} <= {api, emulator}
    assert any("/web/vendor/firebase-auth.js" in url for url in origins)
    assert wrong.get_attribute("type") == "password"
