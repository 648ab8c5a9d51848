"""Real PDFs, generated in the test run (no binaries in the repository)."""

from __future__ import annotations

import pymupdf


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


def zero_page_pdf() -> bytes:
    """A well-formed PDF whose page tree is empty (PyMuPDF refuses to write one itself)."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [] /Count 0 >>",
    ]
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
