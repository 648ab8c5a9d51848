"""One PDF page: its text, every MuPDF warning it raised, and its image. Pure and synchronous.

No database and no event loop: this runs inside a render process (``worker/rendering/pool.py``),
because PyMuPDF is not thread-safe and MuPDF can crash, hang or allocate without bound on hostile
input.

    doc, info = open_document(path)            # DocumentInfo, or ExtractionError saying why not
    page = render_page(doc, index, options)    # RenderedPage: text, warnings, image, thumbnail

The image goes from MuPDF's pixmap samples straight into Pillow's encoder (no PNG round trip),
and one page's pixels are all this module holds at a time: the pixmap is released before the
encoder runs and nothing decoded outlives ``render_page``.
"""

from __future__ import annotations

import io
import math
from typing import Literal

import msgspec
import pymupdf
from PIL import Image

from service.domain.errors import ExtractionError

OUT_OF_MEMORY = ExtractionError("OUT_OF_MEMORY", "Out of memory")
CORRUPT = ExtractionError("PDF_CORRUPT", "PDF is corrupt or truncated")

# A page that warns on every glyph must not turn its report into megabytes.
MAX_WARNINGS = 50
MAX_MESSAGE = 300

ImageFormat = Literal["webp", "jpeg"]
MEDIA_TYPES: dict[str, str] = {"webp": "image/webp", "jpeg": "image/jpeg"}
# The longest side each encoder takes: WebP's format limit, and Pillow's for JPEG.
MAX_SIDE: dict[str, int] = {"webp": 16_383, "jpeg": 65_500}


class RenderOptions(msgspec.Struct, frozen=True, kw_only=True):
    """How pages are rendered (``CHAPTER_DPI``, ``PAGE_IMAGE_FORMAT``, ``PAGE_IMAGE_QUALITY``,
    ``PAGE_MAX_PIXELS``); ``render_images=False`` reads text only (content mode ``pdf_file``)."""

    dpi: int = 150
    image_format: ImageFormat = "webp"
    quality: int = 85
    # WebP effort: method 2 costs about half of method 4 for files 2-3% larger (NOTES.md).
    webp_method: int = 2
    thumbnail_width: int = 240
    max_pixels: int = 12_000_000
    render_images: bool = True


class PageImage(msgspec.Struct, frozen=True):
    """An encoded image and its size in pixels."""

    data: bytes
    width: int
    height: int
    media_type: str


class DocumentInfo(msgspec.Struct, frozen=True):
    """What opening the document told us. ``repaired``: MuPDF had to rebuild a broken file."""

    page_count: int
    title: str | None
    repaired: bool
    warnings: tuple[str, ...]


class RenderedPage(msgspec.Struct, frozen=True):
    """One page. ``error`` is set when MuPDF could not read it (the job goes on without it);
    ``warnings`` holds every MuPDF warning raised while loading and rendering it; ``dpi`` is
    the resolution actually used (lower than asked for a page too large, 0 without an image)."""

    index: int
    text: str
    has_text: bool
    warnings: tuple[str, ...]
    error: str | None
    repaired: bool
    width_pt: float
    height_pt: float
    dpi: float
    image: PageImage | None
    thumbnail: PageImage | None


def quiet_mupdf() -> None:
    """Collect MuPDF's messages instead of printing them: they are reported per page."""
    pymupdf.TOOLS.mupdf_display_errors(False)
    pymupdf.TOOLS.mupdf_display_warnings(False)


def open_document(path: str) -> tuple[pymupdf.Document, DocumentInfo]:
    """Open a PDF, or raise ``ExtractionError`` saying why it cannot be read."""
    pymupdf.TOOLS.reset_mupdf_warnings()
    try:
        doc = pymupdf.open(path, filetype="pdf")
    except MemoryError:
        raise OUT_OF_MEMORY from None
    except Exception as exc:  # FileDataError, RuntimeError, ...: MuPDF could not parse the file
        if is_allocation_failure(exc):
            raise OUT_OF_MEMORY from None
        raise CORRUPT from None
    warnings = _warnings()
    if doc.needs_pass:
        doc.close()
        raise ExtractionError("PDF_ENCRYPTED", "PDF is encrypted")
    if doc.page_count == 0:
        repaired = doc.is_repaired
        doc.close()
        # A cut-off file MuPDF rebuilt into nothing is damaged, not an empty document.
        raise CORRUPT if repaired else ExtractionError("PDF_EMPTY", "PDF has no pages")
    info = DocumentInfo(doc.page_count, title_of(doc), doc.is_repaired, warnings)
    return doc, info


def title_of(doc: pymupdf.Document) -> str | None:
    """The document's metadata title, whitespace collapsed, or None."""
    title = (doc.metadata or {}).get("title") or ""
    title = " ".join(title.split())
    return title[:300] or None


def render_page(doc: pymupdf.Document, index: int, options: RenderOptions) -> RenderedPage:
    """Text, warnings and (unless ``options.render_images`` is off) the image of one page.

    A page MuPDF cannot read comes back with ``error`` set, so one bad page does not lose the
    others; running out of memory raises ``OUT_OF_MEMORY`` (the whole process is suspect then).
    """
    pymupdf.TOOLS.reset_mupdf_warnings()
    text, error = "", None
    width_pt = height_pt = dpi = 0.0
    image = thumbnail = None
    try:
        page = doc.load_page(index)
        width_pt, height_pt = page.rect.width, page.rect.height  # as displayed (rotation applied)
        text = page.get_text()
        if options.render_images:
            dpi = effective_dpi(width_pt, height_pt, options)
            image, thumbnail = _images(page, dpi, options)
    except MemoryError:
        raise OUT_OF_MEMORY from None
    except ExtractionError as exc:  # a page no image can show: its job fails, saying which
        raise ExtractionError(
            exc.code, f"PDF page {index + 1} cannot be rendered: {exc.reason}"
        ) from None
    except Exception as exc:  # one unreadable page must not lose the others
        if is_allocation_failure(exc):
            raise OUT_OF_MEMORY from None
        error = _first_line(str(exc)) or type(exc).__name__
    return RenderedPage(
        index=index,
        text=text,
        has_text=bool(text.strip()),
        warnings=_warnings(),
        error=error,
        repaired=doc.is_repaired,  # MuPDF may repair a file only when a page needs it
        width_pt=width_pt,
        height_pt=height_pt,
        dpi=dpi,
        image=image,
        thumbnail=thumbnail,
    )


def effective_dpi(width_pt: float, height_pt: float, options: RenderOptions) -> float:
    """``options.dpi``, or as much less as the page needs for its pixmap to fit
    ``options.max_pixels`` and its longest side the encoder's (``MAX_SIDE``: a long strip of
    150 DPI is past WebP's 16,383 pixels): a 200-inch map, or a page made huge by
    ``/UserUnit`` (MuPDF applies it to the page's size). The floor is whatever fits, well below
    1 DPI if need be.

    ``PAGE_TOO_LARGE`` (an ``ExtractionError``) when no resolution fits: a size that is not a
    finite positive number of points, or a page so long and thin that at one pixel across it
    is still longer than the encoder allows.
    """
    max_side = MAX_SIDE[options.image_format]
    short, long = sorted((width_pt, height_pt))
    too_large = ExtractionError(
        "PAGE_TOO_LARGE",
        f"{width_pt:.6g} x {height_pt:.6g} pt fits no image within PAGE_MAX_PIXELS "
        f"({options.max_pixels}) and {options.image_format}'s {max_side}-pixel side",
    )
    if not (math.isfinite(long) and short > 0) or long / short > max_side - 2:
        raise too_large
    dpi = float(options.dpi)
    for _ in range(64):  # each step cuts by the square root of the excess: a few suffice
        pixels = _pixels(width_pt, height_pt, dpi)
        side = _side(long, dpi)
        if pixels <= options.max_pixels and side <= max_side:
            return _round_down(dpi)
        # The square root scales both sides; 1% more off covers MuPDF rounding its edges out.
        dpi *= min(0.99, 0.99 * math.sqrt(options.max_pixels / pixels), 0.99 * max_side / side)
    raise too_large


def _round_down(dpi: float) -> float:
    """``dpi`` cut to 4 significant digits (150.0, 17.14, 0.0002301): never rounded up, so the
    pixmap still fits, and never to 0, which a 0.01 step did to a 10^9-point page."""
    step = 10.0 ** (math.floor(math.log10(dpi)) - 3)
    return math.floor(dpi / step) * step


def _pixels(width_pt: float, height_pt: float, dpi: float) -> float:
    return _side(width_pt, dpi) * _side(height_pt, dpi)


def _side(points: float, dpi: float) -> int:
    """Pixels MuPDF gives a side of ``points`` at ``dpi`` (it rounds both edges out)."""
    return math.ceil(points * dpi / 72) + 1


def _images(page: pymupdf.Page, dpi: float, options: RenderOptions) -> tuple[PageImage, PageImage]:
    zoom = dpi / 72
    pix = page.get_pixmap(matrix=pymupdf.Matrix(zoom, zoom), colorspace=pymupdf.csRGB, alpha=False)
    size = (pix.width, pix.height)
    # Pillow copies the samples into its own (4 bytes a pixel) storage; drop MuPDF's copy
    # before encoding so a page never holds three copies of its pixels.
    picture = Image.frombuffer("RGB", size, pix.samples_mv, "raw", "RGB", pix.stride, 1)
    del pix
    with picture:
        image = _encode(picture, options)
        width = min(options.thumbnail_width, picture.width)
        height = max(1, round(picture.height * width / picture.width))
        with picture.resize((width, height), Image.Resampling.BILINEAR, reducing_gap=2.0) as small:
            thumbnail = _encode(small, options)
    return image, thumbnail


def _encode(picture: Image.Image, options: RenderOptions) -> PageImage:
    out = io.BytesIO()
    if options.image_format == "webp":
        picture.save(out, "WEBP", quality=options.quality, method=options.webp_method)
    else:
        picture.save(out, "JPEG", quality=options.quality)
    return PageImage(
        out.getvalue(), picture.width, picture.height, MEDIA_TYPES[options.image_format]
    )


def is_allocation_failure(exc: BaseException) -> bool:
    """MuPDF reports a failed allocation as an ordinary error: ``realloc (N bytes) failed``."""
    message = str(exc)
    return ("alloc" in message and "failed" in message) or "out of memory" in message.lower()


def _warnings() -> tuple[str, ...]:
    """Every MuPDF message since the last reset (``mupdf_warnings`` flushes "repeated N times")."""
    lines = [line[:MAX_MESSAGE] for line in pymupdf.TOOLS.mupdf_warnings().splitlines() if line]
    if len(lines) > MAX_WARNINGS:
        lines = [*lines[:MAX_WARNINGS], f"... and {len(lines) - MAX_WARNINGS} more warnings"]
    return tuple(lines)


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0][:MAX_MESSAGE] if text.strip() else ""
