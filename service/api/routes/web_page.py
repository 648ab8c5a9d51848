"""The browser page: ``/`` and the reader's ``/books/{book_id}/chapters/{chapter_id}`` (both
``service/web/index.html``), its files under ``/web/``, the browser packages it uses under
``/web/vendor/`` (the Firebase Web SDK, Swagger UI for ``/schema``), and ``/config.json`` (what
the page needs to know to sign in).

The files are read once, when the app is built, into an allow list: a request can name only a
file that was there, never a path. Each has a strong ETag (a 304 for a browser that has it) and a
gzip copy. None of these routes is in the OpenAPI schema: they are not the API. The page carries
a Content-Security-Policy that allows no inline script and no script from anywhere but this
origin: everything the page shows from the server is inserted as text, and the policy stops what
would slip through anyway.

Browser packages come from npm (``web-vendor/package.json``, installed by ``make web-vendor``
into ``WEB_VENDOR_DIR``), never from a CDN: the Firebase SDK's auth module imports its app module
from Google's CDN, so that import is rewritten to the copy served here, and a module that would
still import code from elsewhere is not served at all.
"""

from __future__ import annotations

import gzip
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgspec
from litestar import Controller, Request, Response, get
from litestar.params import FromPath
from litestar.status_codes import HTTP_304_NOT_MODIFIED

from service.api.http.etag import etag_matches
from service.domain.errors import NotFound
from service.settings import Settings

WEB_DIR = Path(__file__).resolve().parents[2] / "web"
DEFAULT_VENDOR_DIR = Path(__file__).resolve().parents[3] / ".tools" / "web" / "node_modules"
MEDIA_TYPES = {
    ".html": "text/html",  # Litestar adds "; charset=utf-8" to text types
    ".js": "text/javascript",
    ".css": "text/css",
}
# What /web/vendor/{name} serves: name -> its file in the npm packages' node_modules.
VENDOR_FILES = {
    # The Firebase Web SDK's ES modules ("CDN builds": one file each, no bare imports).
    "firebase-app.js": "firebase/firebase-app.js",
    "firebase-auth.js": "firebase/firebase-auth.js",
    # Swagger UI for /schema (Litestar's SwaggerRenderPlugin loads these three).
    "swagger-ui-bundle.js": "swagger-ui-dist/swagger-ui-bundle.js",
    "swagger-ui-standalone-preset.js": "swagger-ui-dist/swagger-ui-standalone-preset.js",
    "swagger-ui.css": "swagger-ui-dist/swagger-ui.css",
}
FIREBASE_SDK = ("firebase-app.js", "firebase-auth.js")
SWAGGER_UI = ("swagger-ui-bundle.js", "swagger-ui-standalone-preset.js", "swagger-ui.css")
# firebase-auth.js: `import{...}from"https://www.gstatic.com/firebasejs/<version>/firebase-app.js"`
CDN_APP_IMPORT = re.compile(
    rb"https://www\.gstatic\.com/firebasejs/[0-9][0-9A-Za-z.-]*/firebase-app\.js"
)
REMOTE_IMPORT = re.compile(rb"""(?:\bfrom|\bimport\s*\(?)\s*["']https?://""")
SOURCE_MAP = re.compile(rb"\n?/[/*]# sourceMappingURL=[^\n]*\s*$")
# Google sign-in in a popup loads Google's gapi loader into the page; its API endpoints.
GOOGLE_SIGN_IN_SCRIPT = "https://apis.google.com"
FIREBASE_API_ORIGINS = (
    "https://identitytoolkit.googleapis.com",
    "https://securetoken.googleapis.com",
)
AWS_S3_ORIGINS = "https://*.amazonaws.com"


class FirebaseWebConfig(msgspec.Struct, kw_only=True, rename="camel"):
    """The Firebase Web SDK's ``initializeApp`` options: public values."""

    api_key: str
    auth_domain: str
    project_id: str


class PageConfig(msgspec.Struct, kw_only=True):
    """``GET /config.json``: how the page signs in here."""

    app_env: str
    # Emulator mode: the API accepts unsigned development tokens, which the page makes itself.
    dev_sign_in: bool
    firebase_project_id: str
    # Null when FIREBASE_WEB_API_KEY is unset: no production sign-in.
    firebase: FirebaseWebConfig | None
    # The book-jobs poll's interval, used when the event stream cannot be held.
    poll_interval_s: int
    # The Firebase Web SDK is installed here (/web/vendor/): false, and production sign-in
    # cannot load (the page says so).
    firebase_sdk: bool = False
    # Emulator mode with a web API key: the SDK signs in against the Firebase Auth Emulator at
    # this origin (FIREBASE_AUTH_EMULATOR_HOST), the way the API verifies its tokens.
    firebase_emulator_url: str | None = None
    # The resolution page images are rendered at (CHAPTER_DPI): the reader's 100 % is the
    # page's printed size.
    page_dpi: int = 150


def page_config(settings: Settings, vendor: dict[str, WebFile] | None = None) -> PageConfig:
    """What ``/config.json`` answers for these settings (``vendor``: the browser packages
    installed, as ``load_vendor`` found them)."""
    firebase = None
    if settings.firebase_web_api_key:
        firebase = FirebaseWebConfig(
            api_key=settings.firebase_web_api_key,
            auth_domain=_auth_domain(settings),
            project_id=settings.firebase_project_id,
        )
    return PageConfig(
        app_env=settings.app_env.value,
        dev_sign_in=bool(settings.firebase_auth_emulator_host),
        firebase_project_id=settings.firebase_project_id,
        firebase=firebase,
        poll_interval_s=settings.poll_retry_after_s,
        firebase_sdk=all(name in (vendor or {}) for name in FIREBASE_SDK),
        firebase_emulator_url=_emulator_url(settings) if firebase else None,
        page_dpi=settings.chapter_dpi,
    )


def _emulator_url(settings: Settings) -> str | None:
    host = settings.firebase_auth_emulator_host
    return f"http://{host}" if host else None


def _auth_domain(settings: Settings) -> str:
    return settings.firebase_auth_domain or f"{settings.firebase_project_id}.firebaseapp.com"


def _origin(url: str | None) -> str | None:
    if not url:
        return None
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def content_security_policy(settings: Settings) -> str:
    """The page's policy: its own scripts and styles only (the Firebase SDK is served from
    here); images from wherever page images are served; Firebase's sign-in origins only when
    production sign-in is configured (the Auth Emulator's instead in emulator mode)."""
    scripts = ["'self'"]
    connect = ["'self'"]
    frames = ["'none'"]
    if settings.firebase_web_api_key:
        emulator = _emulator_url(settings)
        if emulator:
            connect.append(emulator)
            frames = [emulator]
        else:
            scripts.append(GOOGLE_SIGN_IN_SCRIPT)
            connect.extend(FIREBASE_API_ORIGINS)
            frames = [f"https://{_auth_domain(settings)}"]
    api = _origin(settings.api_public_url)
    if api:
        connect.append(api)
    images = ["'self'", "data:"]
    for url in (settings.api_public_url, settings.page_public_base_url):
        origin = _origin(url)
        if origin:
            images.append(origin)
    if settings.page_store == "s3":
        images.append(_origin(settings.s3_endpoint_url) or AWS_S3_ORIGINS)
    directives = [
        "default-src 'none'",
        f"script-src {' '.join(scripts)}",
        "style-src 'self'",
        f"img-src {' '.join(dict.fromkeys(images))}",
        f"connect-src {' '.join(dict.fromkeys(connect))}",
        f"frame-src {' '.join(frames)}",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
    return "; ".join(directives)


@dataclass(frozen=True, slots=True)
class WebFile:
    """A file served as it was read at startup: its body, a gzip copy (None when no smaller),
    its type and a strong ETag."""

    body: bytes
    media_type: str
    gzipped: bytes | None = None
    etag: str = ""


def web_file(body: bytes, media_type: str) -> WebFile:
    packed = gzip.compress(body, compresslevel=6, mtime=0)
    return WebFile(
        body=body,
        media_type=media_type,
        gzipped=packed if len(packed) < len(body) else None,
        etag=f'"{hashlib.sha256(body).hexdigest()[:32]}"',
    )


def load_files(directory: Path = WEB_DIR) -> dict[str, WebFile]:
    """Every servable file of the page, by name: read once, so requests never touch paths."""
    return {
        path.name: web_file(path.read_bytes(), MEDIA_TYPES[path.suffix])
        for path in sorted(directory.iterdir())
        if path.is_file() and path.suffix in MEDIA_TYPES
    }


def vendor_dir(settings: Settings) -> Path:
    """Where the browser packages are installed: ``WEB_VENDOR_DIR``, else the source tree's
    ``.tools/web/node_modules``."""
    return Path(settings.web_vendor_dir) if settings.web_vendor_dir else DEFAULT_VENDOR_DIR


def load_vendor(directory: Path) -> dict[str, WebFile]:
    """The browser packages' files found in ``directory``, by name (``VENDOR_FILES``), ready to
    serve: the Firebase SDK's import of its app module pointed at the copy served beside it,
    source-map comments dropped. A module that still imports code from another origin is left
    out, and so is the Firebase SDK unless both of its modules are there."""
    files: dict[str, WebFile] = {}
    for name, relative in VENDOR_FILES.items():
        path = directory / relative
        if not path.is_file():
            continue
        body = SOURCE_MAP.sub(b"", path.read_bytes())
        body = CDN_APP_IMPORT.sub(b"./firebase-app.js", body)
        if path.suffix == ".js" and REMOTE_IMPORT.search(body):
            continue
        files[name] = web_file(body, MEDIA_TYPES[path.suffix])
    if not all(name in files for name in FIREBASE_SDK):
        for name in FIREBASE_SDK:
            files.pop(name, None)
    return files


def serve(
    request: Request[Any, Any, Any], file: WebFile, headers: dict[str, str]
) -> Response[bytes]:
    """``file`` as the request can take it: a 304 when its ETag matches, gzip when accepted."""
    headers = {**headers, "etag": file.etag, "vary": "accept-encoding"}
    if etag_matches(request.headers.get("if-none-match"), file.etag):
        return Response(b"", status_code=HTTP_304_NOT_MODIFIED, headers=headers)
    if file.gzipped is not None and "gzip" in request.headers.get("accept-encoding", ""):
        headers["content-encoding"] = "gzip"
        return Response(file.gzipped, media_type=file.media_type, headers=headers)
    return Response(file.body, media_type=file.media_type, headers=headers)


def web_page_controller(
    settings: Settings, vendor: dict[str, WebFile] | None = None
) -> type[Controller]:
    """The page's routes for these settings (its files and policy are fixed at startup);
    ``vendor``: the browser packages ``load_vendor`` found."""
    files = load_files()
    packages = vendor or {}
    config = msgspec.json.encode(page_config(settings, packages))
    page_headers = {
        "content-security-policy": content_security_policy(settings),
        "cache-control": "no-cache",
        "x-content-type-options": "nosniff",
        "referrer-policy": "no-referrer",
    }
    asset_headers = {"cache-control": "no-cache", "x-content-type-options": "nosniff"}

    class WebPageController(Controller):
        """The browser page (service/web/); outside the API's schema."""

        include_in_schema = False

        @get("/", include_in_schema=False)
        async def index(self, request: Request[Any, Any, Any]) -> Response[bytes]:
            return serve(request, files["index.html"], page_headers)

        @get("/books/{book_id:str}/chapters/{chapter_id:str}", include_in_schema=False)
        async def reader(self, request: Request[Any, Any, Any]) -> Response[bytes]:
            # The reader's own URL: the same page, which reads the chapter from its path.
            return serve(request, files["index.html"], page_headers)

        @get("/web/{name:str}", include_in_schema=False)
        async def asset(
            self, request: Request[Any, Any, Any], name: FromPath[str]
        ) -> Response[bytes]:
            asset = files.get(name)
            if asset is None:
                raise NotFound("No such file")
            return serve(request, asset, asset_headers)

        @get("/web/vendor/{name:str}", include_in_schema=False)
        async def vendor_asset(
            self, request: Request[Any, Any, Any], name: FromPath[str]
        ) -> Response[bytes]:
            asset = packages.get(name)
            if asset is None:
                raise NotFound("No such file (the browser packages: make web-vendor)")
            return serve(request, asset, asset_headers)

        @get("/config.json", include_in_schema=False)
        async def config_json(self) -> Response[bytes]:
            return Response(config, media_type="application/json", headers=asset_headers)

    return WebPageController
