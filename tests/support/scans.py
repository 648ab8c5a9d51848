"""Scanned pages, generated in the test run: known text drawn by PyMuPDF, rasterised, degraded
as a scanner or a phone would, and put back into a PDF as one picture (no text layer).

    scan = clean_scan()          # Scan(pdf=bytes, text=the words drawn, in reading order)
    cer(ocr_text, scan.text)     # character error rate, whitespace-insensitive

Every scan is A4 (595 x 842 pt) as the reader sees it, the picture filling the page, so a test
can compare the page's image and words with where the text was drawn.
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass

import pymupdf
from PIL import Image, ImageFilter

# Plain English a book would hold: a dictionary helps Tesseract, as it does on real books.
SENTENCES = [
    "The river had risen in the night, and by morning the lower fields were under water.",
    "Nobody in the village could remember a flood like it since the winter of 1947.",
    "Martha walked to the bridge before breakfast to see how high the water had come.",
    "The old stone arches held, though branches and fence posts piled against them.",
    "Her brother said the council would do nothing until the harvest was lost.",
    "She wrote a letter to the newspaper that afternoon and posted it herself.",
    "Three days later a surveyor arrived with a map, a notebook and a borrowed bicycle.",
    "He measured the banks, counted the broken trees and asked about the old mill race.",
    "In the evening he sat by the fire and told them what the records showed.",
    "The river had changed its course twice in two hundred years, each time after rain.",
    "Some of the farmers laughed, but Martha kept the figures and copied the map.",
    "By spring the first new wall was built along the north bank of the river.",
    "Children came after school to watch the workmen mix mortar and lift the stones.",
    "The schoolmaster made a lesson of it, with drawings of levels and currents.",
    "When the rains returned in October, the water rose to the wall and stopped.",
    "It was the first autumn in years that the lower fields gave a full crop.",
]

A4_PT = (595.0, 842.0)
MARGIN_PT = 60.0


@dataclass(frozen=True)
class Scan:
    """A one-page image-only PDF and the text drawn on it, in reading order."""

    pdf: bytes
    text: str


def prose(words: int, seed: int) -> str:
    """About ``words`` words of the sentences above, in an order fixed by ``seed``."""
    rng = random.Random(seed)
    out: list[str] = []
    while len(" ".join(out).split()) < words:
        out.append(rng.choice(SENTENCES))
    return " ".join(out)


def _text_page(columns: list[str], fontsize: float) -> pymupdf.Document:
    """An A4 PDF page with each string of ``columns`` set in its own column (Times)."""
    doc = pymupdf.open()
    page = doc.new_page(width=A4_PT[0], height=A4_PT[1])
    width = (A4_PT[0] - 2 * MARGIN_PT - 24 * (len(columns) - 1)) / len(columns)
    for number, text in enumerate(columns):
        x0 = MARGIN_PT + number * (width + 24)
        box = pymupdf.Rect(x0, MARGIN_PT, x0 + width, A4_PT[1] - MARGIN_PT)
        left = page.insert_textbox(box, text, fontsize=fontsize, fontname="tiro")
        assert left >= 0, "the text does not fit its column"
    return doc


def _raster(doc: pymupdf.Document, dpi: int) -> Image.Image:
    pix = doc[0].get_pixmap(dpi=dpi, colorspace=pymupdf.csGRAY)
    return Image.frombytes("L", (pix.width, pix.height), pix.samples)


def _pdf(picture: Image.Image, *, image_format: str = "PNG", quality: int = 90) -> bytes:
    """One page the size of ``picture`` at its DPI (A4 either way round), the picture filling it."""
    width, height = A4_PT if picture.width < picture.height else A4_PT[::-1]
    out = io.BytesIO()
    picture.save(out, image_format, **({"quality": quality} if image_format == "JPEG" else {}))
    doc = pymupdf.open()
    page = doc.new_page(width=width, height=height)
    page.insert_image(page.rect, stream=out.getvalue())
    data: bytes = doc.tobytes()
    doc.close()
    return data


def clean_scan(*, words: int = 380, seed: int = 1, dpi: int = 200) -> Scan:
    """A clean grey scan at ``dpi`` of one column of 11 pt text."""
    text = prose(words, seed)
    with _text_page([text], 11) as doc:
        picture = _raster(doc, dpi)
    return Scan(_pdf(picture), text)


def degraded_scan(*, words: int = 380, seed: int = 2, tilt: float = 1.8) -> Scan:
    """9 pt text scanned at 150 DPI, tilted by ``tilt`` degrees, grey paper, sensor noise, a
    little out of focus, then saved as JPEG quality 30."""
    text = prose(words, seed)
    with _text_page([text], 9) as doc:
        picture = _raster(doc, 150)
    picture = picture.rotate(tilt, Image.Resampling.BILINEAR, fillcolor=255)
    rng = random.Random(seed)
    noise = Image.frombytes("L", picture.size, rng.randbytes(picture.width * picture.height))
    # Grey paper, ink that is not quite black, and noise of about +-25 levels.
    picture = Image.blend(picture.point(lambda v: 30 + v * 200 // 255), noise, 0.2)
    picture = picture.filter(ImageFilter.GaussianBlur(0.6))
    return Scan(_pdf(picture, image_format="JPEG", quality=30), text)


def turned_scan(degrees: int, *, words: int = 300, seed: int = 3) -> Scan:
    """A clean 200 DPI scan put into the PDF turned ``degrees`` counter-clockwise (90: the page
    lies on its side, landscape; 180: upside down)."""
    text = prose(words, seed)
    with _text_page([text], 11) as doc:
        picture = _raster(doc, 200).rotate(degrees, expand=True)
    return Scan(_pdf(picture), text)


def two_column_scan(*, words: int = 160, seed: int = 4) -> Scan:
    """A clean 200 DPI scan of two columns: the text reads down the left column, then the right."""
    left, right = prose(words, seed), prose(words, seed + 100)
    with _text_page([left, right], 10) as doc:
        picture = _raster(doc, 200)
    return Scan(_pdf(picture), f"{left} {right}")


PAGE_NUMBER = "17"


def numbered_scan(*, words: int = 300, seed: int = 5) -> Scan:
    """A clean 200 DPI scan with its page number as real text at the foot of the page (as a
    scanning service or a PDF editor adds it): a text layer that covers almost nothing."""
    text = prose(words, seed)
    with _text_page([text], 11) as doc:
        picture = _raster(doc, 200)
    doc = pymupdf.open(stream=_pdf(picture), filetype="pdf")
    doc[0].insert_text((A4_PT[0] / 2 - 6, A4_PT[1] - 30), PAGE_NUMBER, fontsize=10)
    data: bytes = doc.tobytes()
    doc.close()
    return Scan(data, f"{text} {PAGE_NUMBER}")


def cer(read: str, truth: str) -> float:
    """Character error rate of ``read`` against ``truth``: edit distance over the length of
    ``truth``, with every run of whitespace counted as one space (line breaks are layout)."""
    a, b = " ".join(read.split()), " ".join(truth.split())
    return edit_distance(a, b) / max(1, len(b))


def edit_distance(a: str, b: str, band: int | None = None) -> int:
    """Levenshtein distance, computed in a diagonal band (``band`` defaults to 20% of the longer
    string): an answer above the band is reported as band + 1, enough to fail any CER bound
    we assert. O(len * band) instead of O(len^2): a page is ~2,000 characters."""
    if band is None:
        band = max(8, max(len(a), len(b)) // 5)
    if abs(len(a) - len(b)) > band:
        return band + 1
    big = band + 1
    previous = [j if j <= band else big for j in range(len(b) + 1)]
    for i in range(1, len(a) + 1):
        lo, hi = max(1, i - band), min(len(b), i + band)
        current = [big] * (len(b) + 1)
        if i <= band:
            current[0] = i
        ai = a[i - 1]
        for j in range(lo, hi + 1):
            cost = previous[j - 1] + (ai != b[j - 1])
            if previous[j] + 1 < cost:
                cost = previous[j] + 1
            if current[j - 1] + 1 < cost:
                cost = current[j - 1] + 1
            current[j] = cost
        previous = current
    return min(previous[len(b)], big)
