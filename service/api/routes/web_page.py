"""The browser page: ``/`` (``service/web/index.html``), its files under ``/web/``, and
``/config.json`` (what the page needs to know to sign in).

The files are read once, when the app is built, into an allow list: a request can name only a
file that was there, never a path. None of these routes is in the OpenAPI schema: they are not
the API. The page carries a Content-Security-Policy that allows no inline script and no script
from anywhere but this origin (and, when production sign-in is configured, Google's CDN for the
Firebase Web SDK): everything the page shows from the server is inserted as text, and the policy
stops what would slip through anyway.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import msgspec
from litestar import Controller, Response, get
from litestar.params import FromPath

from service.domain.errors import NotFound
from service.settings import Settings

WEB_DIR = Path(__file__).resolve().parents[2] / "web"
MEDIA_TYPES = {
    ".html": "text/html",  # Litestar adds "; charset=utf-8" to text types
    ".js": "text/javascript",
    ".css": "text/css",
}
# The Firebase Web SDK's ES modules (service/web/auth.js imports them in production).
FIREBASE_SDK_ORIGIN = "https://www.gstatic.com"
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


def page_config(settings: Settings) -> PageConfig:
    """What ``/config.json`` answers for these settings."""
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
    )


def _auth_domain(settings: Settings) -> str:
    return settings.firebase_auth_domain or f"{settings.firebase_project_id}.firebaseapp.com"


def _origin(url: str | None) -> str | None:
    if not url:
        return None
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def content_security_policy(settings: Settings) -> str:
    """The page's policy: its own scripts and styles only; images from wherever page images
    are served; the Firebase SDK's origins only when production sign-in is configured."""
    scripts = ["'self'"]
    connect = ["'self'"]
    frames = ["'none'"]
    if settings.firebase_web_api_key:
        scripts.append(FIREBASE_SDK_ORIGIN)
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
    body: bytes
    media_type: str


def load_files(directory: Path = WEB_DIR) -> dict[str, WebFile]:
    """Every servable file of the page, by name: read once, so requests never touch paths."""
    return {
        path.name: WebFile(path.read_bytes(), MEDIA_TYPES[path.suffix])
        for path in sorted(directory.iterdir())
        if path.is_file() and path.suffix in MEDIA_TYPES
    }


def web_page_controller(settings: Settings) -> type[Controller]:
    """The page's routes for these settings (its files and policy are fixed at startup)."""
    files = load_files()
    config = msgspec.json.encode(page_config(settings))
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
        async def index(self) -> Response[bytes]:
            page = files["index.html"]
            return Response(page.body, media_type=page.media_type, headers=page_headers)

        @get("/web/{name:str}", include_in_schema=False)
        async def asset(self, name: FromPath[str]) -> Response[bytes]:
            asset = files.get(name)
            if asset is None:
                raise NotFound("No such file")
            return Response(asset.body, media_type=asset.media_type, headers=asset_headers)

        @get("/config.json", include_in_schema=False)
        async def config_json(self) -> Response[bytes]:
            return Response(config, media_type="application/json", headers=asset_headers)

    return WebPageController
