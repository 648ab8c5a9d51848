"""Render ``nginx/`` into a runnable config: ``python -m devstack nginx --out DIR``.

The allow list comes from ``CORS_ORIGINS`` (exact origins, or ``~regex`` patterns), the upload
limit from ``MAX_UPLOAD_MB``, the upstream API instances from ``--upstream`` (repeatable).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

SOURCE = Path(__file__).resolve().parent.parent / "nginx"
INCLUDES = ("edge-headers.conf", "edge-outage.conf")
PLACEHOLDER = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")
# Room for the multipart framing around the file.
FORM_OVERHEAD_MB = 1


def origins_map(origins: list[str]) -> str:
    """``map $http_origin $cors_origin``: the allowed origin echoed back, or "" (no header)."""
    lines = ["map $http_origin $cors_origin {", '    default "";']
    for origin in origins:
        if origin.startswith("~"):
            pattern = origin[1:]
            re.compile(pattern)  # fail here, not in nginx
            lines.append(f'    "~{pattern}" $http_origin;')
        else:
            if '"' in origin or "\\" in origin:
                raise ValueError(f"invalid origin {origin!r}")
            lines.append(f'    "{origin}" $http_origin;')
    lines.append("}")
    return "\n".join(lines) + "\n"


def render(
    out: Path, *, upstreams: list[str], listen: str, origins: list[str], max_upload_mb: int
) -> Path:
    """Write ``nginx.conf`` and its includes to ``out``; return the path of ``nginx.conf``."""
    out.mkdir(parents=True, exist_ok=True)
    for sub in ("logs", "tmp"):
        (out / sub).mkdir(exist_ok=True)
    servers = "\n        ".join(f"server {server} max_fails=0;" for server in upstreams)
    values = {
        "UPSTREAM_SERVERS": servers,
        "LISTEN": listen,
        "CLIENT_MAX_BODY_MB": str(max_upload_mb + FORM_OVERHEAD_MB),
        "MAX_UPLOAD_MB": str(max_upload_mb),
    }
    # ${UPPER_CASE} placeholders only: nginx's own $variables stay as they are.
    conf = PLACEHOLDER.sub(
        lambda m: values[m.group(1)], (SOURCE / "nginx.conf.template").read_text()
    )
    (out / "nginx.conf").write_text(conf)
    (out / "cors-origins.conf").write_text(origins_map(origins))
    for name in INCLUDES:
        shutil.copyfile(SOURCE / name, out / name)
    return out / "nginx.conf"
