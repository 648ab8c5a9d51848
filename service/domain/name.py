"""Names clients send: file names and titles are cleaned, identifiers are checked.

A name ends up in logs, terminals, HTML and other people's file managers. An escape sequence in a
file name (``a\\x1b[31mred.pdf``) recolours a terminal that prints it; a bidi control
(``\\u202e``) shows ``evil\\u202efdp.exe`` as ``evilexe.pdf``; a zero-width character makes two
different names look the same. File names and titles (a chapter's, asked for or read from the
PDF's metadata) lose all of these; identifiers (``book_id``) that contain any of them, or are
blank, are refused, since a stored id is matched exactly later and must not change.
"""

from __future__ import annotations

import re
import unicodedata

MAX_FILENAME_CHARS = 255
DEFAULT_FILENAME = "document.pdf"
MAX_TITLE_CHARS = 300

# Terminal escape sequences, removed whole so no visible remains are left (``[31m``):
# CSI (ESC [ or C1 0x9B) params, intermediates, final byte; OSC/DCS/SOS/PM/APC strings up to BEL
# or ST (ESC \ or C1 0x9C), or to the end when unterminated; any other two-byte ESC sequence.
_ESCAPE = re.compile(
    r"(?:\x1b\[|\x9b)[\x30-\x3f]*[\x20-\x2f]*[\x40-\x7e]?"
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    r"|\x1b[\x20-\x2f]*[\x30-\x7e]?"
)

# Characters that are not text: controls (Cc), format characters (Cf: bidi embeddings and
# isolates U+202A-U+202E and U+2066-U+2069, zero-width U+200B-U+200F, U+2060, U+FEFF, soft
# hyphen), surrogates, private use, unassigned, and line/paragraph separators.
_NOT_TEXT = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def _is_text(char: str) -> bool:
    return unicodedata.category(char) not in _NOT_TEXT


def safe_filename(raw: str | None) -> str:
    """The base name a client sent, without path parts, escape sequences or invisible characters.

    Other spaces (no-break, ideographic) become a plain space, runs of spaces one; at most
    ``MAX_FILENAME_CHARS`` characters, cut before the extension so ``.pdf`` survives. A name left
    empty (or only dots) becomes ``document.pdf``.
    """
    name = unicodedata.normalize("NFC", raw or "")
    name = _ESCAPE.sub("", name)
    name = "".join(" " if unicodedata.category(ch) == "Zs" else ch for ch in name if _is_text(ch))
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = " ".join(name.split())
    if not name.strip("."):
        return DEFAULT_FILENAME
    if len(name) > MAX_FILENAME_CHARS:
        stem, dot, suffix = name.rpartition(".")
        if dot and 0 < len(suffix) <= 16:
            name = stem[: MAX_FILENAME_CHARS - len(suffix) - 1].rstrip() + "." + suffix
        else:
            name = name[:MAX_FILENAME_CHARS].rstrip()
    return name


def clean_title(raw: str | None) -> str | None:
    """A title as people read it: escape sequences and invisible characters removed as from a
    file name (``safe_filename``), line breaks, tabs and other spaces made one plain space, at
    most ``MAX_TITLE_CHARS``; None when nothing is left."""
    title = unicodedata.normalize("NFC", raw or "")
    title = _ESCAPE.sub("", title)
    title = "".join(
        " " if ch.isspace() else ch for ch in title if ch.isspace() or _is_text(ch)
    )  # str.isspace: tabs, line breaks (Cc, Zl, Zp) and every Zs
    title = " ".join(title.split())[:MAX_TITLE_CHARS].rstrip()
    return title or None


def printable_problem(value: str) -> str | None:
    """Why ``value`` is not a printable identifier, or None when it is.

    Printable: letters, marks, numbers, punctuation, symbols and the plain space; no control,
    line break, bidi, zero-width or other invisible character.
    """
    for char in value:
        if not _is_text(char) or (unicodedata.category(char) == "Zs" and char != " "):
            return f"printable characters only: U+{ord(char):04X} is not allowed"
    return None


def identifier_problem(value: str) -> str | None:
    """Why ``value`` cannot be an identifier the client chooses (``book_id``), or None.

    It must be printable (``printable_problem``) and not blank, and it is also a URL path segment
    (``/api/v1/books/{book_id}/chapters/...``): a ``/`` would split it (proxies and servers
    decode ``%2F``), and URLs resolve ``.`` and ``..`` away, so a chapter of such a book could
    never be read back.
    """
    problem = printable_problem(value)
    if problem is not None:
        return problem
    if not value.strip():
        return "must not be blank: the id is part of the chapter's URL"
    if "/" in value:
        return "'/' is not allowed: the id is part of the chapter's URL"
    if value in {".", ".."}:
        return f"'{value}' is not allowed: the id is part of the chapter's URL"
    return None
