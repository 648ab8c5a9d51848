"""A page hook for render pools under test: it runs inside the render process, before a page.

It appends ``<pid> <file name> <page index>`` to ``pages.log`` in the PDF's directory (which
process rendered what, in one order across jobs), and misbehaves when the PDF's file name asks
it to: ``abort-at-2.pdf`` aborts the process on page index 2 (SIGABRT, as a crashing MuPDF
would), ``kill-at-N`` kills it (SIGKILL, as the OOM killer would), ``hang-at-N`` never returns.
Production pools have no hook at all.
"""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path


def misbehave(path: str, index: int) -> None:
    pdf = Path(path)
    with open(pdf.parent / "pages.log", "a") as log:  # one short append: atomic across processes
        log.write(f"{os.getpid()} {pdf.name} {index}\n")
    match = re.search(r"(abort|kill|hang)-at-(\d+)\.pdf$", pdf.name)
    if match is None or int(match.group(2)) != index:
        return
    if match.group(1) == "abort":
        os.abort()
    if match.group(1) == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(3600)


def page_log(directory: Path) -> list[tuple[int, str, int]]:
    """``(pid, file name, page index)`` for every page the hook saw in ``directory``, in order."""
    try:
        lines = (directory / "pages.log").read_text().splitlines()
    except FileNotFoundError:
        return []
    return [(int(pid), name, int(index)) for pid, name, index in map(str.split, lines)]


def rendered(path: str) -> list[tuple[int, int]]:
    """``(pid, page index)`` for every page of the PDF at ``path`` the hook saw, in order."""
    pdf = Path(path)
    return [(pid, index) for pid, name, index in page_log(pdf.parent) if name == pdf.name]


def abort_at_titled_page(path: str, index: int) -> None:
    """Aborts the render process on page index N of a PDF whose metadata title is
    ``abort-at-N``: the worker stores every PDF as ``source.pdf``, so its name cannot ask."""
    import pymupdf

    with pymupdf.open(path) as doc:
        match = re.fullmatch(r"abort-at-(\d+)", doc.metadata.get("title") or "")
    if match is not None and int(match.group(1)) == index:
        os.abort()


def hold_at_titled_page(path: str, index: int) -> None:
    """Holds the render process on page index N of a PDF whose metadata title is
    ``hold-at-N:<folder>``: it creates ``<folder>/held``, then waits until ``<folder>/go``
    exists (once it does, the page renders at once, in this run or any later one)."""
    import pymupdf

    with pymupdf.open(path) as doc:
        match = re.fullmatch(r"hold-at-(\d+):(.+)", doc.metadata.get("title") or "")
    if match is None or int(match.group(1)) != index:
        return
    folder = Path(match.group(2))
    (folder / "held").touch()
    while not (folder / "go").exists():
        time.sleep(0.01)
