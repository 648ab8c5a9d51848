"""Real PDFs, generated in the test run (no binaries in the repository)."""

from __future__ import annotations

import io
import math
import random
from collections.abc import Iterable
from typing import Any

import pymupdf
from PIL import Image, ImageDraw


def text_pdf(pages: int, *, title: str | None = None, words: int = 40) -> bytes:
    """A PDF of ``pages`` pages, each with its own recognisable text."""
    doc = pymupdf.open()
    for index in range(pages):
        page = doc.new_page()
        body = " ".join(f"word{index}-{n}" for n in range(words))
        page.insert_text((72, 72), f"Page {index + 1} of {pages}", fontsize=14)
        page.insert_textbox(pymupdf.Rect(72, 100, 540, 760), body, fontsize=10)
    if title:
        doc.set_metadata({"title": title})
    data: bytes = doc.tobytes()
    doc.close()
    return data


def encrypted_pdf() -> bytes:
    doc = pymupdf.open(stream=text_pdf(2), filetype="pdf")
    data: bytes = doc.tobytes(
        encryption=pymupdf.PDF_ENCRYPT_AES_256, user_pw="secret", owner_pw="owner-secret"
    )
    doc.close()
    return data


def raw_pdf(objects: list[bytes]) -> bytes:
    """A PDF written byte by byte: object 1 is the catalog, the rest as given (what PyMuPDF
    would refuse to write, or writes too slowly for thousands of pages)."""
    out = bytearray(b"%PDF-1.7\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def pdf_stream(dictionary: bytes, data: bytes) -> bytes:
    """A stream object's body: ``dictionary`` entries, ``/Length`` and ``data``."""
    return b"<< " + dictionary + b" /Length %d >>\nstream\n" % len(data) + data + b"\nendstream"


def zero_page_pdf() -> bytes:
    """A well-formed PDF whose page tree is empty (PyMuPDF refuses to write one itself)."""
    return raw_pdf([b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [] /Count 0 >>"])


def sized_page_pdf(width: float, height: float, *, user_unit: float = 1.0) -> bytes:
    """One page ``width`` x ``height`` units with ``/UserUnit`` (points per unit, at most 75,000:
    a 14,400-unit page is then 10^9 points): a blue square, 5,000 units wide, near its corner."""
    return raw_pdf(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 %g %g] /UserUnit %g /Contents 4 0 R >>"
            % (width, height, user_unit),
            pdf_stream(b"", b"0 0 1 rg 0 0 5000 5000 re f"),
        ]
    )


def truncated_pdf() -> bytes:
    """The first 40% of a real PDF: a header and then nothing usable."""
    data = text_pdf(5)
    return data[: len(data) * 2 // 5]


def garbage_after_header() -> bytes:
    return b"%PDF-1.7\n" + b"\x00\xff garbage " * 200


def memory_bomb_pdf(million_chars: int = 5) -> bytes:
    """About 11 KB on disk, millions of characters once its content stream is inflated: text
    extraction needs hundreds of MB for it."""
    doc = pymupdf.open()
    page = doc.new_page()
    page.insert_text((72, 72), "x", fontname="helv")
    run = b"(" + b"A" * 1000 + b") Tj "
    content = b"BT /helv 1 Tf 10 10 Td " + run * (million_chars * 1000) + b"ET"
    doc.update_stream(page.get_contents()[0], content, compress=True)
    data: bytes = doc.tobytes(deflate=True)
    doc.close()
    return data


def slow_last_page_pdf(pages: int, *, words: int = 30) -> bytes:
    """``pages`` pages: light text pages (``text_pdf``), then one ``memory_bomb_pdf(10)`` page
    that keeps MuPDF busy far longer than any of them (about a second; JOB_MEMORY_LIMIT_MB 4096).
    A job on it is still running while its light pages are stored: tests stop or cancel it there."""
    doc = pymupdf.open(stream=text_pdf(pages - 1, words=words), filetype="pdf")
    with pymupdf.open(stream=memory_bomb_pdf(10), filetype="pdf") as bomb:
        doc.insert_pdf(bomb)
    data: bytes = doc.tobytes()
    doc.close()
    return data


# Pages that look like real books: drawings, pictures, rotated, huge, CJK, scanned, damaged.


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def raster_png(width: int = 320, height: int = 200) -> bytes:
    """A picture: a red field with a blue-to-green gradient band (a raster, not vector art)."""
    picture = Image.new("RGB", (width, height), (220, 30, 30))
    band = Image.linear_gradient("L").resize((width, height // 2))
    picture.paste(
        Image.merge("RGB", (Image.new("L", band.size, 0), band, band.point(lambda v: 255 - v)))
    )
    return _png(picture)


def _draw_figure(page: pymupdf.Page, seed: int = 0) -> None:
    """A vector figure: axes, a grid, a curve, filled shapes, tick labels."""
    left, top, right, bottom = 90, 140 + seed % 7, 500, 420
    shape = page.new_shape()
    for x in range(left, right + 1, 41):
        shape.draw_line((x, top), (x, bottom))
    for y in range(int(top), bottom + 1, 28):
        shape.draw_line((left, y), (right, y))
    shape.finish(color=(0.75, 0.75, 0.75), width=0.5)
    shape.draw_rect(pymupdf.Rect(left, top, right, bottom))
    shape.finish(color=(0, 0, 0), width=1.2)
    points = [
        pymupdf.Point(left + x, bottom - 120 - 100 * math.sin((x + seed * 13) / 40))
        for x in range(0, right - left, 4)
    ]
    shape.draw_polyline(points)
    shape.finish(color=(0.1, 0.2, 0.8), width=1.5)
    shape.draw_circle((left + 300, top + 80), 40)
    shape.finish(color=(0.6, 0, 0), fill=(1, 0.8, 0.2), width=1)
    shape.draw_bezier((left, bottom), (left + 100, top), (left + 200, bottom), (right, top + 40))
    shape.finish(color=(0, 0.5, 0), width=2)
    shape.commit()
    for x in range(left, right + 1, 82):
        page.insert_text((x - 6, bottom + 14), str(x - left), fontsize=8)


# A4 as LaTeX and word processors write it (PyMuPDF's own "a4" is rounded to 595 x 842).
A4 = (595.28, 841.89)


def a4_pdf() -> bytes:
    """One A4 page of text."""
    doc = pymupdf.open()
    page = doc.new_page(width=A4[0], height=A4[1])
    page.insert_text((72, 100), "An A4 page", fontsize=14)
    data: bytes = doc.tobytes()
    doc.close()
    return data


def drawing_pdf(pages: int = 1) -> bytes:
    """Vector drawings (lines, shapes, curves) with a caption on every page."""
    doc = pymupdf.open()
    for index in range(pages):
        page = doc.new_page()
        page.insert_text((72, 100), f"Figure {index + 1}: a plotted curve", fontsize=12)
        _draw_figure(page, index)
    data: bytes = doc.tobytes()
    doc.close()
    return data


# Where raster_image_pdf puts its picture, in points (the test reads the pixels back there).
RASTER_RECT = pymupdf.Rect(100, 300, 420, 500)


def raster_image_pdf() -> bytes:
    """An embedded raster picture (red with a gradient band) under a line of text."""
    doc = pymupdf.open()
    page = doc.new_page()
    page.insert_text((72, 100), "A photograph follows.", fontsize=12)
    page.insert_image(RASTER_RECT, stream=raster_png())
    data: bytes = doc.tobytes()
    doc.close()
    return data


def rotated_pdf() -> bytes:
    """An A4 page shown in landscape (``/Rotate 90``)."""
    doc = pymupdf.open()
    page = doc.new_page()
    page.insert_text((72, 100), "Turned sideways", fontsize=14)
    page.set_rotation(90)
    data: bytes = doc.tobytes()
    doc.close()
    return data


def huge_page_pdf() -> bytes:
    """One 200 x 200 inch page (the largest PDF allows): 900 megapixels at 150 DPI."""
    doc = pymupdf.open()
    page = doc.new_page(width=14_400, height=14_400)
    page.insert_text((720, 720), "A wall map", fontsize=400)
    page.draw_rect(pymupdf.Rect(1000, 2000, 13_000, 13_000), color=(0, 0, 1), width=60)
    data: bytes = doc.tobytes()
    doc.close()
    return data


CJK_TEXT = "第一章 山海经 汉字与书法"


def cjk_pdf() -> bytes:
    """Chinese text in PyMuPDF's built-in CJK font."""
    doc = pymupdf.open()
    page = doc.new_page()
    page.insert_text((72, 100), CJK_TEXT, fontname="china-s", fontsize=20)
    data: bytes = doc.tobytes()
    doc.close()
    return data


def scanned_pdf() -> bytes:
    """A page that is one picture of text (a scan): dark word-like marks on paper, no text layer."""
    scan = Image.new("L", (1240, 1754), 236)
    draw = ImageDraw.Draw(scan)
    rng = random.Random(11)
    for line in range(60):
        x, y = 120, 150 + line * 24
        while x < 1100:
            word = rng.randint(20, 90)
            draw.rectangle((x, y, x + word, y + 12), fill=rng.randint(20, 70))
            x += word + 14
    doc = pymupdf.open()
    page = doc.new_page()
    page.insert_image(page.rect, stream=_png(scan))
    data: bytes = doc.tobytes()
    doc.close()
    return data


def figure_heavy_pdf(pages: int) -> bytes:
    """Book pages with a vector figure, a paragraph and a raster picture each (benchmarks)."""
    doc = pymupdf.open()
    picture = raster_png()
    for index in range(pages):
        page = doc.new_page()
        page.insert_text((72, 100), f"Figure {index + 1}", fontsize=12)
        _draw_figure(page, index)
        body = " ".join(f"word{index}-{n}" for n in range(120))
        page.insert_textbox(pymupdf.Rect(72, 450, 540, 640), body, fontsize=10)
        page.insert_image(pymupdf.Rect(100, 650, 420, 780), stream=picture)
    data: bytes = doc.tobytes(garbage=1)  # the picture is stored once, as in a real book
    doc.close()
    return data


def truncated_tail_pdf(pages: int = 5) -> bytes:
    """A PDF cut off before its cross-reference table: MuPDF repairs it, pages intact."""
    data = text_pdf(pages)
    return data[: data.rindex(b"xref")]


def cut_pdf(fraction: float, pages: int = 5) -> bytes:
    """The first ``fraction`` of a text PDF: some pages survive, some are damaged."""
    data = text_pdf(pages)
    return data[: int(len(data) * fraction)]


def truncated_before_pages_pdf() -> bytes:
    """A PDF cut off right after its catalog: it opens (repaired) with no pages at all."""
    data = text_pdf(5)
    catalog = data.index(b"/Catalog")
    return data[: data.index(b"endobj", catalog) + len(b"endobj\n")]


def book_pdf(pages: int, *, lines: int = 30) -> bytes:
    """``pages`` text-heavy pages, fast to make (about 1 ms a page): one font shared by every
    page and each content stream written directly. Line ``k`` of page ``i`` (from 1) reads
    ``Page i line k: ...``, so every page's text is its own."""
    doc = pymupdf.open()
    first = doc.new_page()
    first.insert_text((72, 72), "x", fontname="helv", fontsize=9)
    resources = doc.xref_get_key(first.xref, "Resources")[1]
    for index in range(pages):
        ops = ["BT /helv 9 Tf 11 TL 72 770 Td"]
        ops += [
            f"(Page {index + 1} line {k}: the quick brown fox jumps over the lazy dog) '"
            for k in range(lines)
        ]
        content = "\n".join([*ops, "ET"]).encode()
        if index == 0:
            doc.update_stream(first.get_contents()[0], content)
            continue
        page = doc.new_page()
        xref = doc.get_new_xref()
        doc.update_object(xref, "<<>>")
        doc.update_stream(xref, content, compress=True)
        doc.xref_set_key(page.xref, "Contents", f"{xref} 0 R")
        doc.xref_set_key(page.xref, "Resources", resources)
    data: bytes = doc.tobytes(deflate=True)
    doc.close()
    return data


# Pages whose words have a known order and place (worker/rendering/page.py's positioned words).

LEFT_COLUMN = "The left column opens the page and is read first, from its top to its foot."
RIGHT_COLUMN = "The right column follows it, read only once the whole left column is done."


def two_column_pdf() -> bytes:
    """One page of two text columns side by side, each wrapped over several lines."""
    doc = pymupdf.open()
    page = doc.new_page()
    page.insert_textbox(pymupdf.Rect(60, 80, 280, 300), LEFT_COLUMN, fontsize=14)
    page.insert_textbox(pymupdf.Rect(320, 80, 540, 300), RIGHT_COLUMN, fontsize=14)
    data: bytes = doc.tobytes()
    doc.close()
    return data


def cropped_pdf() -> bytes:
    """A page whose crop box starts 100 pt right of and 150 pt below its media box's corner, with
    a line of text inside the crop box and one outside it (not on the page as displayed)."""
    doc = pymupdf.open()
    page = doc.new_page()
    page.insert_text((150, 260), "Inside the crop box", fontsize=16)
    page.insert_text((20, 40), "Cropped away", fontsize=16)
    page.set_cropbox(pymupdf.Rect(100, 150, 500, 700))
    data: bytes = doc.tobytes()
    doc.close()
    return data


# Four pages on four subjects, each in words its questions will not use (tests of search).
TOPICS = {
    "Photosynthesis": (
        "Green leaves hold chlorophyll, a pigment that absorbs the energy of sunlight. Inside "
        "the chloroplasts that energy splits water molecules, releasing oxygen into the air, and "
        "drives the fixation of carbon dioxide into glucose through the Calvin cycle. The sugar "
        "built this way feeds the whole organism and, through food chains, nearly every animal."
    ),
    "Harbour tides": (
        "Twice a day the sea rises and falls along the coast because the gravitational pull of "
        "the Moon, and to a lesser degree the Sun, draws the oceans into bulges. Harbour masters "
        "publish tables of high and low water so that deep-keeled vessels enter the port only "
        "when the channel is deep enough to float them safely over the sandbar."
    ),
    "Castle defences": (
        "Medieval fortresses relied on thick curtain walls, a moat filled with water, and a "
        "drawbridge that could be raised against attackers. Archers shot through narrow arrow "
        "slits from the towers, while a portcullis of iron bars sealed the gatehouse. Sieges "
        "often lasted months until the defenders ran out of grain."
    ),
    "Bread baking": (
        "Kneading flour and water develops gluten, an elastic network that traps the carbon "
        "dioxide released by yeast as it ferments sugars. The dough rises during proofing, and "
        "the heat of the oven sets its crumb while the crust browns through the Maillard "
        "reaction between proteins and sugars."
    ),
}


def topics_pdf(title: str = "Four subjects") -> bytes:
    """One page per subject of ``TOPICS``, with an outline entry each, and a title."""
    doc = pymupdf.open()
    for heading, body in TOPICS.items():
        page = doc.new_page()
        page.insert_text((72, 72), heading, fontsize=16)
        page.insert_textbox(pymupdf.Rect(72, 100, 540, 760), body, fontsize=11)
    doc.set_toc([[1, heading, number] for number, heading in enumerate(TOPICS, start=1)])
    doc.set_metadata({"title": title})
    data: bytes = doc.tobytes()
    doc.close()
    return data


def joined_pdf(parts: Iterable[bytes]) -> bytes:
    """One PDF of ``parts``' pages, in order."""
    doc = pymupdf.open()
    for part in parts:
        with pymupdf.open(stream=part, filetype="pdf") as source:
            doc.insert_pdf(source)
    data: bytes = doc.tobytes()
    doc.close()
    return data


def titled(data: bytes, title: str) -> bytes:
    """``data`` with its metadata title set (a render hook reads what a test asks of it there:
    the worker stores every PDF as ``source.pdf``, so its name cannot ask)."""
    with pymupdf.open(stream=data, filetype="pdf") as doc:
        doc.set_metadata({"title": title})
        out: bytes = doc.tobytes()
    return out


# A sentence of page 37 of ``reader_pdf``: the reader's tests select it and copy it.
READER_SENTENCE = "Salt wind bends the old pines toward the quiet bay."
READER_LINK = "https://example.org/lighthouse-notes"


def reader_sentence(number: int) -> str:
    """The sentence that makes page ``number`` of ``reader_pdf`` its own."""
    return f"The keeper wrote entry {number} in the lighthouse ledger before dawn."


def reader_pdf(pages: int = 60, *, title: str = "The Lighthouse Ledger") -> bytes:
    """A chapter to read: a contents page whose lines link to their pages (and one line to a
    web page), an outline of parts and sections, a sentence of its own on every page
    (``reader_sentence``), ``READER_SENTENCE`` on page 37, and the word "harbour" twice on
    every seventh page (find in the chapter has hits to step through)."""
    doc = pymupdf.open()
    for _ in range(pages):
        doc.new_page()
    sections = list(range(11, pages + 1, 10))
    contents = doc[0]
    contents.insert_text((72, 72), "Contents", fontsize=18)
    for row, number in enumerate(sections):
        y = 110 + row * 24
        contents.insert_text(
            (72, y), f"Section {number // 10} begins on page {number}", fontsize=12
        )
        contents.insert_link(
            {"kind": pymupdf.LINK_GOTO, "from": pymupdf.Rect(70, y - 13, 330, y + 4),
             "page": number - 1, "to": pymupdf.Point(0, 0)}
        )  # fmt: skip
    y = 110 + len(sections) * 24 + 12
    contents.insert_text((72, y), "Notes on the web", fontsize=12)
    contents.insert_link(
        {"kind": pymupdf.LINK_URI, "from": pymupdf.Rect(70, y - 13, 220, y + 4), "uri": READER_LINK}
    )
    for index in range(1, pages):
        page, number = doc[index], index + 1
        page.insert_text((72, 72), f"Page {number} of {pages}", fontsize=14)
        body = [reader_sentence(number)]
        if number == 37:
            body.append(READER_SENTENCE)
        if number % 7 == 0:
            body.append("Ships wait in the harbour, and the harbour bell rings at noon.")
        body.append("The tide comes in and goes out again, as it did the day before.")
        page.insert_textbox(pymupdf.Rect(72, 100, 540, 760), " ".join(body), fontsize=12)
    toc = [[1, "Contents", 1]]
    for number in sections:
        toc.append([1 if number % 20 == 11 else 2, f"Section {number // 10}", number])
    doc.set_toc(toc)
    doc.set_metadata({"title": title})
    data: bytes = doc.tobytes()
    doc.close()
    return data


def warning_pdf(pages: int, *, missing: int = 60, name_length: int = 200) -> bytes:
    """``pages`` pages that all draw ``missing`` form XObjects their resources do not have, each
    with a long name: MuPDF warns ``missing`` times a page, about 12.5 KB of warnings a page.
    One content stream shared by every page: 1,600 pages are about 250 KB, made in milliseconds."""
    names = [b"X" + b"n" * name_length + b"%03d" % i for i in range(missing)]
    content = b"\n".join(b"/" + name + b" Do" for name in names)
    kids = b" ".join(b"%d 0 R" % (4 + i) for i in range(pages))
    page = (
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
        b"/Resources << /XObject << >> >> /Contents 3 0 R >>"
    )
    return raw_pdf(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, pages),
            pdf_stream(b"", content),
            *[page] * pages,
        ]
    )


def amplification_pdf(pages: int = 4, *, noise_side: int = 200, page_side: float = 1440) -> bytes:
    """``pages`` large pages (``page_side`` points square) that all show one picture of random
    noise, stored once: 124 KB for 4 pages whose images take about 2 MB at a million pixels a
    page (noise does not compress). What a user could store far more than they upload."""
    rng = random.Random(7)
    noise = Image.frombytes("RGB", (noise_side, noise_side), rng.randbytes(noise_side**2 * 3))
    picture = _png(noise)
    doc = pymupdf.open()
    for _ in range(pages):
        page = doc.new_page(width=page_side, height=page_side)
        page.insert_image(page.rect, stream=picture)
    data: bytes = doc.tobytes(garbage=3, deflate=True)  # the picture once, shared by every page
    doc.close()
    return data


def padded_pdf_file(path: Any, size: int) -> int:
    """Write a valid one-page PDF of ``size`` bytes to ``path``: a page of text, and the rest a
    stream of random bytes no page uses (MuPDF never reads it; nothing compresses it). Written
    in pieces, never held whole. Its size."""
    page_text = b"BT /F1 12 Tf 72 720 Td (A large PDF) Tj ET"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 << /Type /Font /Subtype /Type1 /BaseFont /Helvetica >> >> >> >>",
        pdf_stream(b"", page_text),
    ]
    padding = max(size - len(raw_pdf(objects)) - 200, 0)  # about: the rest is its framing
    with open(path, "wb") as out:
        out.write(b"%PDF-1.7\n")
        offsets = []
        for number, body in enumerate(objects, start=1):
            offsets.append(out.tell())
            out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
        offsets.append(out.tell())
        out.write(b"5 0 obj\n<< /Length %d >>\nstream\n" % padding)
        rng = random.Random(5)
        left = padding
        while left:
            piece = min(left, 1 << 20)
            out.write(rng.randbytes(piece))
            left -= piece
        out.write(b"\nendstream\nendobj\n")
        xref = out.tell()
        out.write(b"xref\n0 6\n0000000000 65535 f \n")
        for offset in offsets:
            out.write(b"%010d 00000 n \n" % offset)
        out.write(b"trailer\n<< /Size 6 /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % xref)
        return out.tell()


def nested_forms_pdf(pages: int = 1, *, levels: int = 30) -> bytes:
    """``pages`` pages that each draw form XObject 1, which draws form 2 twice, and so on
    ``levels`` deep: 2^levels drawings of a line from 8 KB. At 18 levels a page takes MuPDF
    about 2 s; at 30, thousands of times longer: it renders until the page time limit."""
    first_form = 4 + pages  # objects: catalog, pages, content, the pages, then the forms
    kids = b" ".join(b"%d 0 R" % (4 + i) for i in range(pages))
    page = (
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
        b"/Resources << /XObject << /X %d 0 R >> >> /Contents 3 0 R >>" % first_form
    )
    forms = []
    for level in range(levels):
        if level + 1 < levels:
            resources = b"/Resources << /XObject << /X %d 0 R >> >>" % (first_form + level + 1)
            drawing = b"q /X Do Q q 1 0 0 1 1 1 cm /X Do Q"
        else:
            resources, drawing = b"", b"0 0 m 10 10 l S"
        forms.append(
            pdf_stream(b"/Type /XObject /Subtype /Form /BBox [0 0 612 792] " + resources, drawing)
        )
    return raw_pdf(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, pages),
            pdf_stream(b"", b"q /X Do Q"),
            *[page] * pages,
            *forms,
        ]
    )
