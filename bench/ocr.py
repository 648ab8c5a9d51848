"""OCR and positioned words: the render pool against single-process baselines of the same run.

1. OCR pages/s on generated scans (tests/support/scans.py: A4, 200 DPI, one column of 11 pt text),
   every page OCRed at 300 DPI and rendered to a 150 DPI WebP with its thumbnail:
   - raw: PyMuPDF's own ``page.get_textpage_ocr(full=True, dpi=300)`` and the same image work,
     in this process (MuPDF's path: it renders the page again and starts Tesseract per call);
   - pool(1), pool(2): worker/rendering/pool.py, OCR="auto" (every page is a scan).
   Targets on 2 cores: pool(1)/raw >= 0.9, pool(2)/pool(1) >= 1.7. CPU ms a page are printed
   too: they hold still when other work shares the machine, where pages/s do not.
2. Orientation: pool(1) on the same scans turned upside down (a second pass each) against upright.
3. What OCR="auto" costs a PDF with a text layer (generated book pages and figure pages, images
   on): render_page with OCR="auto" against OCR="off", in this process, alternating rounds,
   CPU time. Target: within 5% (deciding must not render).
4. Positioned words on text pages: render_page without images (text, words, their compact form)
   against ``page.get_text()`` alone; and the compact form's bytes on a dense page against JSON.
5. The pixels of an OCR page whose image is at 150 DPI and OCR at 300: render twice (RGB 150 for
   the image, grey 300 for OCR) against once (RGB 300, downscaled for the image, greyed for OCR).

Prints figures and ratios; never passes or fails. Run: .venv/bin/python bench/ocr.py
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import pymupdf
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.proc import cpu_seconds  # noqa: E402
from service.domain.words import decode_words  # noqa: E402
from tests.support.pdfs import book_pdf, figure_heavy_pdf, joined_pdf  # noqa: E402
from tests.support.scans import clean_scan, prose, turned_scan  # noqa: E402
from worker.rendering.ocr import default_tessdata  # noqa: E402
from worker.rendering.page import RenderOptions, quiet_mupdf, render_page  # noqa: E402
from worker.rendering.pool import RenderPool  # noqa: E402

OPTIONS = RenderOptions()  # 150 DPI WebP, OCR "auto" at 300 DPI, eng


def raw(path: str) -> tuple[float, float]:
    """Pages/s and CPU ms a page: PyMuPDF's OCR and the pool's image work, in this process."""
    doc = pymupdf.open(path)
    tessdata = default_tessdata()
    zoom = OPTIONS.dpi / 72
    wall, cpu = time.perf_counter(), time.process_time()
    for page in doc:
        textpage = page.get_textpage_ocr(language="eng", dpi=300, full=True, tessdata=tessdata)
        page.get_text(textpage=textpage)
        page.get_text("words", textpage=textpage)
        pix = page.get_pixmap(matrix=pymupdf.Matrix(zoom, zoom), alpha=False)
        picture = Image.frombuffer(
            "RGB", (pix.width, pix.height), pix.samples_mv, "raw", "RGB", pix.stride, 1
        )
        del pix
        picture.save(io.BytesIO(), "WEBP", quality=OPTIONS.quality, method=OPTIONS.webp_method)
        small = picture.resize((240, round(picture.height * 240 / picture.width)))
        small.save(io.BytesIO(), "WEBP", quality=OPTIONS.quality, method=OPTIONS.webp_method)
    pages = doc.page_count
    return pages / (time.perf_counter() - wall), 1000 * (time.process_time() - cpu) / pages


async def pooled(path: str, processes: int, warm: str) -> tuple[float, float, list[str]]:
    """Pages/s, CPU ms a page (render processes plus this one) and the text sources (with,
    for a pool of several, each process's share of the CPU), after each process has OCRed one
    page of ``warm`` (Tesseract started, as in a running worker)."""
    async with RenderPool(processes, 2048 * 1024 * 1024, 600) as pool:
        await asyncio.gather(*(_drain(pool, warm, [i], OPTIONS) for i in range(processes)))
        count = (await pool.open(path)).page_count
        each = [cpu_seconds([pid]) for pid in pool.pids]
        before = sum(each) + time.process_time()
        wall = time.perf_counter()
        sources = await _drain(pool, path, range(count), OPTIONS)
        wall = time.perf_counter() - wall
        each = [cpu_seconds([pid]) - was for pid, was in zip(pool.pids, each, strict=True)]
        cpu = sum(each) + time.process_time() - before
    shares = "/".join(f"{part / sum(each):.0%}" for part in each)
    return count / wall, 1000 * cpu / count, [*sources, f"CPU split {shares}"]


async def _drain(
    pool: RenderPool, path: str, indices: Iterable[int], options: RenderOptions
) -> list[str]:
    sources = []
    async with contextlib.aclosing(pool.render(path, indices, options)) as pages:
        async for page in pages:
            sources.append(f"{page.text_source}/{page.rotation}")
    return sources


def cpu_ms_per_page(path: str, options: RenderOptions) -> float:
    with pymupdf.open(path) as doc:
        start = time.process_time()
        for index in range(doc.page_count):
            render_page(doc, index, options)
        return 1000 * (time.process_time() - start) / doc.page_count


def alternating(path: str, a: RenderOptions, b: RenderOptions, rounds: int) -> tuple[float, float]:
    """Median CPU ms a page of ``a`` and ``b``, measured in alternating rounds."""
    cpu_ms_per_page(path, a)  # warm: fonts, caches
    times_a, times_b = [], []
    for _ in range(rounds):
        times_a.append(cpu_ms_per_page(path, a))
        times_b.append(cpu_ms_per_page(path, b))
    return sorted(times_a)[rounds // 2], sorted(times_b)[rounds // 2]


def per_page_ms(path: str, work: Callable[[pymupdf.Page], object], rounds: int = 5) -> float:
    best = float("inf")
    with pymupdf.open(path) as doc:
        for _ in range(rounds):
            start = time.process_time()
            for page in doc:
                work(page)
            best = min(best, (time.process_time() - start) / doc.page_count)
    return 1000 * best


def dense_page_text() -> str:
    """About 600 words of real English prose when the machine has the GPL's text, else ours."""
    try:
        words = Path("/usr/share/common-licenses/GPL-3").read_text().split()
    except OSError:
        return prose(600, 7)
    return " ".join(words[400:1000])


def words_size(workdir: str) -> None:
    doc = pymupdf.open()
    page = doc.new_page()
    page.insert_textbox(pymupdf.Rect(50, 50, 545, 800), dense_page_text(), fontsize=8.5)
    path = os.path.join(workdir, "dense.pdf")
    doc.save(path)
    doc.close()
    with pymupdf.open(path) as doc:
        rendered = render_page(doc, 0, RenderOptions(render_images=False, ocr="off"))
    words = decode_words(rendered.words)
    dicts = json.dumps(
        [
            dict(zip(("x0", "y0", "x1", "y1", "text", "block", "line"), w, strict=True))
            for w in words
        ]
    ).encode()
    lists = json.dumps([list(w) for w in words]).encode()
    import zlib

    size = len(rendered.words)
    print(f"\ncompact words form, one dense page ({len(words)} words, 150 DPI grid):")
    print(
        f"  compact {size} B ({size / len(words):.1f} B/word), zlib of it {len(zlib.compress(rendered.words))} B"
    )
    print(
        f"  JSON list of dicts {len(dicts)} B ({len(dicts) / size:.1f}x), "
        f"JSON list of lists {len(lists)} B ({len(lists) / size:.1f}x)"
    )


def pixels_once_or_twice(path: str) -> None:
    """CPU ms a page of the two ways to get an OCR page's pixels (section 5)."""
    image_zoom, ocr_zoom = pymupdf.Matrix(150 / 72, 150 / 72), pymupdf.Matrix(300 / 72, 300 / 72)

    def twice(page: pymupdf.Page) -> None:
        page.get_pixmap(matrix=image_zoom, colorspace=pymupdf.csRGB, alpha=False)
        _ = page.get_pixmap(matrix=ocr_zoom, colorspace=pymupdf.csGRAY, alpha=False).samples

    def once(page: pymupdf.Page) -> None:
        pix = page.get_pixmap(matrix=ocr_zoom, colorspace=pymupdf.csRGB, alpha=False)
        picture = Image.frombuffer(
            "RGB", (pix.width, pix.height), pix.samples_mv, "raw", "RGB", pix.stride, 1
        )
        picture.reduce(2)
        picture.convert("L").tobytes()

    two, one = per_page_ms(path, twice), per_page_ms(path, once)
    print("\n5. an OCR page's pixels (image 150 DPI, OCR 300 DPI), CPU ms/page:")
    print(f"  render twice (RGB 150 + grey 300) {two:.1f}   once (RGB 300, reduce, grey) {one:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scans", type=int, default=8, help="scanned pages OCRed per run")
    parser.add_argument("--text-pages", type=int, default=60, help="text pages for auto vs off")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds, auto vs off")
    args = parser.parse_args()
    quiet_mupdf()
    print(f"CPUs {len(os.sched_getaffinity(0))}, load average {os.getloadavg()[0]:.1f} at start")
    with tempfile.TemporaryDirectory(prefix="pcj-bench-ocr-") as workdir:
        scans = os.path.join(workdir, "scans.pdf")
        Path(scans).write_bytes(joined_pdf(clean_scan(seed=s).pdf for s in range(args.scans)))
        warm = os.path.join(workdir, "warm.pdf")
        Path(warm).write_bytes(joined_pdf(clean_scan(words=40, seed=s).pdf for s in range(2)))

        print(
            f"\n1. OCR, {args.scans} scanned A4 pages (~380 words each), 300 DPI OCR + 150 DPI WebP:"
        )
        raw_rate, raw_cpu = raw(scans)
        one, one_cpu, sources = asyncio.run(pooled(scans, 1, warm))
        two, two_cpu, split = asyncio.run(pooled(scans, 2, warm))
        print(f"  raw get_textpage_ocr {raw_rate:6.2f} pages/s  {raw_cpu:6.0f} CPU ms/page")
        # Cores busy = CPU ms a page x pages/s: pool(2) can only scale as far as the machine
        # leaves it a second core (it is shared: see the load average).
        print(
            f"  pool(1)              {one:6.2f} pages/s  {one_cpu:6.0f} CPU ms/page  {sorted(set(sources[:-1]))}"
        )
        print(f"  pool(2)              {two:6.2f} pages/s  {two_cpu:6.0f} CPU ms/page  {split[-1]}")
        print(
            f"  cores busy: pool(1) {one * one_cpu / 1000:.2f}, pool(2) {two * two_cpu / 1000:.2f}"
        )
        print(
            f"  pool(1)/raw {one / raw_rate:.2f} (target >= 0.9)   "
            f"pool(2)/pool(1) {two / one:.2f} (target >= 1.7)"
        )

        upside = os.path.join(workdir, "upside-down.pdf")
        Path(upside).write_bytes(
            joined_pdf(
                turned_scan(180, words=380, seed=s).pdf for s in range(max(2, args.scans // 2))
            )
        )
        upright = os.path.join(workdir, "upright.pdf")
        Path(upright).write_bytes(
            joined_pdf(
                clean_scan(words=380, seed=s + 50).pdf for s in range(max(2, args.scans // 2))
            )
        )
        up, up_cpu, _ = asyncio.run(pooled(upright, 1, warm))
        down, down_cpu, sources = asyncio.run(pooled(upside, 1, warm))
        print("\n2. orientation, pool(1):")
        print(f"  upright     {up:6.2f} pages/s  {up_cpu:6.0f} CPU ms/page")
        print(
            f"  upside down {down:6.2f} pages/s  {down_cpu:6.0f} CPU ms/page  {sorted(set(sources[:-1]))}"
        )
        print(f"  upside down costs {down_cpu / up_cpu:.2f}x an upright page (CPU)")

        print(
            f"\n3. OCR=auto on PDFs with a text layer, {args.text_pages} pages, images on, CPU ms/page (median of {args.rounds}):"
        )
        for name, data in [
            ("book pages", book_pdf(args.text_pages)),
            ("figure pages", figure_heavy_pdf(args.text_pages)),
        ]:
            path = os.path.join(workdir, "text.pdf")
            Path(path).write_bytes(data)
            auto, off = alternating(path, OPTIONS, RenderOptions(ocr="off"), args.rounds)
            print(
                f"  {name:12} auto {auto:6.1f}   off {off:6.1f}   auto/off {auto / off:.3f} (target <= 1.05)"
            )

        path = os.path.join(workdir, "book.pdf")
        Path(path).write_bytes(book_pdf(args.text_pages, lines=60))
        text_only = per_page_ms(path, lambda page: page.get_text())
        with_words = per_page_ms(
            path,
            lambda page: render_page(page.parent, page.number, RenderOptions(render_images=False)),
        )
        print(
            f"\n4. positioned words, {args.text_pages} book pages of 60 lines, no images, CPU ms/page:"
        )
        print(
            f"  get_text() alone {text_only:.2f}   render_page (text, words, compact form) {with_words:.2f}   (+{with_words - text_only:.2f} ms)"
        )
        words_size(workdir)
        pixels_once_or_twice(scans)
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":  # the render processes import this module as their __main__
    main()
