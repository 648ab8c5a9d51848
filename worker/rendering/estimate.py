"""How many pixels a PDF's page images will have, read from its page boxes without loading a
page: what the storage quota is checked against before a job renders (``worker/run/room.py``).
Pure, and run in a render process (it reads the hostile PDF).

Each page counts its pixmap at the rendering DPI, capped at ``PAGE_MAX_PIXELS`` (a larger page is
rendered smaller). The crop box is read as it is written, so a page enlarged by ``/UserUnit``
counts its capped size anyway. Reading 5,000 crop boxes takes 0.18 s here.
"""

from __future__ import annotations

import math

import pymupdf

from worker.rendering.page import RenderOptions


def page_pixels(doc: pymupdf.Document, options: RenderOptions) -> int:
    """The pixels of every page's image, each capped at ``options.max_pixels``; a page whose
    box cannot be read counts nothing (it may well have no image)."""
    zoom = options.dpi / 72
    total = 0
    for index in range(doc.page_count):
        try:
            box = doc.page_cropbox(index)
        except Exception:  # noqa: S112 - a damaged page tree: the page may not render at all
            continue
        width, height = abs(box.width), abs(box.height)
        if not (math.isfinite(width) and math.isfinite(height)):
            total += options.max_pixels
            continue
        pixels = (math.ceil(width * zoom) + 1) * (math.ceil(height * zoom) + 1)
        total += min(pixels, options.max_pixels)
    return total
