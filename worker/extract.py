"""PDF text extraction with PyMuPDF: pure, synchronous, no database. Runs in a child process.

PyMuPDF is not thread-safe and MuPDF can crash, hang or allocate without bound on hostile input,
so this module runs in a process of its own (``worker/isolation.py``) under a memory cap and
talks to the worker over a pipe:

    ("meta", page_count, title)        once the document opened
    ("pages", [(index, text, error)])  batches, in page order
    ("done",)                          every page was read
    ("error", code, reason)            the document cannot be processed
"""

from __future__ import annotations

import resource
import time
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection

import pymupdf

BATCH_PAGES = 64
BATCH_SECONDS = 0.05


class ExtractionError(Exception):
    """A document that cannot be processed, with a stable code and a public reason."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


OUT_OF_MEMORY = ExtractionError("OUT_OF_MEMORY", "Out of memory")


@dataclass(frozen=True, slots=True)
class Page:
    index: int
    text: str
    error: str | None


def open_pdf(path: str) -> pymupdf.Document:
    """Open a PDF or raise ``ExtractionError`` saying why it cannot be read."""
    try:
        doc = pymupdf.open(path, filetype="pdf")
    except MemoryError:
        raise OUT_OF_MEMORY from None
    except Exception:  # FileDataError, RuntimeError, ...: MuPDF could not parse the file
        raise ExtractionError("PDF_CORRUPT", "PDF is corrupt or truncated") from None
    if doc.needs_pass:
        doc.close()
        raise ExtractionError("PDF_ENCRYPTED", "PDF is encrypted")
    if doc.page_count == 0:
        doc.close()
        raise ExtractionError("PDF_EMPTY", "PDF has no pages")
    return doc


def title_of(doc: pymupdf.Document) -> str | None:
    title = (doc.metadata or {}).get("title") or ""
    title = " ".join(title.split())
    return title[:300] or None


def pages(doc: pymupdf.Document) -> Iterator[Page]:
    """Every page's text; a page MuPDF cannot read yields its error instead, and we go on."""
    for index in range(doc.page_count):
        pymupdf.TOOLS.reset_mupdf_warnings()
        try:
            text = doc.load_page(index).get_text()
        except MemoryError:
            raise OUT_OF_MEMORY from None
        except Exception as exc:  # one unreadable page must not lose the others
            if is_allocation_failure(exc):
                raise OUT_OF_MEMORY from None
            yield Page(index, "", _first_line(str(exc)) or type(exc).__name__)
            continue
        problems = pymupdf.TOOLS.mupdf_warnings()
        error = _first_line(problems) if "error" in problems else None
        yield Page(index, text, error)


def is_allocation_failure(exc: BaseException) -> bool:
    """MuPDF reports a failed allocation as an ordinary error: ``realloc (N bytes) failed``."""
    message = str(exc)
    return ("alloc" in message and "failed" in message) or "out of memory" in message.lower()


def _vsz_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[0]) * resource.getpagesize()


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0][:300] if text.strip() else ""


def run(path: str, conn: Connection, memory_limit_bytes: int) -> None:
    """Child process entry point: cap memory, extract, report over ``conn``.

    The cap is what parsing may add to the process's address space as it starts (Python and
    MuPDF themselves are not counted against a job).
    """
    cap = _vsz_bytes() + memory_limit_bytes
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    pymupdf.TOOLS.mupdf_display_errors(False)
    pymupdf.TOOLS.mupdf_display_warnings(False)
    try:
        doc = open_pdf(path)
        conn.send(("meta", doc.page_count, title_of(doc)))
        batch: list[tuple[int, str, str | None]] = []
        last_send = time.monotonic()
        for page in pages(doc):
            batch.append((page.index, page.text, page.error))
            if len(batch) >= BATCH_PAGES or time.monotonic() - last_send >= BATCH_SECONDS:
                conn.send(("pages", batch))
                batch = []
                last_send = time.monotonic()
        if batch:
            conn.send(("pages", batch))
        conn.send(("done",))
    except ExtractionError as exc:
        conn.send(("error", exc.code, exc.reason))
    except MemoryError:
        conn.send(("error", OUT_OF_MEMORY.code, OUT_OF_MEMORY.reason))
    except Exception as exc:
        if is_allocation_failure(exc):
            conn.send(("error", OUT_OF_MEMORY.code, OUT_OF_MEMORY.reason))
        else:
            conn.send(("error", "PDF_CORRUPT", "PDF is corrupt or truncated"))
    finally:
        conn.close()
