"""Page rendering: the render pool against single-process baselines of the same run.

1. pages/s on a generated figure-heavy PDF (vector figure + paragraph + raster picture a page)
   and, when installed, Debian's pgfmanual.pdf (texlive-pictures-doc; a sample of its pages):
   - raw: PyMuPDF pixmap -> Pillow WebP q85 method 2 + thumbnail + text, in this process;
   - original: the original product's path, pixmap.tobytes("png") -> PIL.Image.open -> WebP q85
     method 4, in this process;
   - pool(1), pool(2): worker/rendering/pool.py with 1 and 2 render processes, same settings as raw.
   Targets on 2 cores: pool(1)/raw >= 0.85, pool(2)/pool(1) >= 1.7, pool(2)/original >= 4.
   CPU ms a page (this process, or the pool's processes plus this one) are printed too: they
   hold still when other work shares the machine, where pages/s do not.
2. peak RSS of the process tree (this process, the forkserver, the render processes), sampled
   from /proc, rendering 2,000 pages against 20 pages of a generated text + drawing PDF with
   pool(2). Target <= 1.3x.
3. text only (what a pdf_file job asks of the pool): pool(2) against raw get_text().
4. the worker end to end (``bench/render_worker.py``): a real ``python -m worker`` with
   RENDER_PROCESSES=1 and 2, pages/s claim to completed on the figure-heavy PDF, as ratios to
   raw and original above: worker(1)/raw >= 0.85, worker(2)/worker(1) >= 1.7,
   worker(2)/original >= 4; peak RSS of the worker tree, 2,000 vs 20 pages, <= 1.3x; enqueue ->
   first page image fetchable, p50 <= 1 s.

Prints figures and ratios; never passes or fails. Run: .venv/bin/python bench/render.py
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import glob
import gzip
import io
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path

import pymupdf
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.proc import cpu_seconds  # noqa: E402
from bench.render_worker import WorkerFigures, worker_figures  # noqa: E402
from tests.support.pdfs import drawing_pdf, figure_heavy_pdf  # noqa: E402
from worker.rendering.page import RenderOptions, quiet_mupdf  # noqa: E402
from worker.rendering.pool import RenderPool  # noqa: E402

OPTIONS = RenderOptions()  # 150 DPI, WebP q85 method 2, 240 px thumbnails
PGF_MANUALS = [
    "/usr/share/doc/texlive-doc/latex/pgf/pgfmanual.pdf",
    "/usr/share/doc/texlive-doc/generic/pgf/pgfmanual.pdf",
    "/usr/share/doc/texlive-doc/*/pgf/pgfmanual.pdf*",
]
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


def raw(path: str, indices: list[int]) -> tuple[float, float]:
    """Pages/s and CPU ms a page of the pool's work, done inline in this process."""
    doc = pymupdf.open(path)
    zoom = OPTIONS.dpi / 72
    wall, cpu = time.perf_counter(), time.process_time()
    for index in indices:
        page = doc.load_page(index)
        page.get_text()
        pix = page.get_pixmap(matrix=pymupdf.Matrix(zoom, zoom), alpha=False)
        picture = Image.frombuffer(
            "RGB", (pix.width, pix.height), pix.samples_mv, "raw", "RGB", pix.stride, 1
        )
        del pix
        picture.save(io.BytesIO(), "WEBP", quality=OPTIONS.quality, method=OPTIONS.webp_method)
        width = OPTIONS.thumbnail_width
        small = picture.resize(
            (width, round(picture.height * width / picture.width)),
            Image.Resampling.BILINEAR,
            reducing_gap=2.0,
        )
        small.save(io.BytesIO(), "WEBP", quality=OPTIONS.quality, method=OPTIONS.webp_method)
    return _rates(len(indices), wall, cpu)


def original(path: str, indices: list[int]) -> tuple[float, float]:
    """Pages/s and CPU ms a page of the original product's path (PNG round trip, method 4)."""
    doc = pymupdf.open(path)
    wall, cpu = time.perf_counter(), time.process_time()
    for index in indices:
        page = doc.load_page(index)
        page.get_text()
        png = page.get_pixmap(dpi=OPTIONS.dpi).tobytes("png")
        Image.open(io.BytesIO(png)).save(io.BytesIO(), "WEBP", quality=85, method=4)
    return _rates(len(indices), wall, cpu)


def _rates(pages: int, wall: float, cpu: float) -> tuple[float, float]:
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return pages / wall, 1000 * cpu / pages


async def pooled(
    path: str, indices: list[int], processes: int, options: RenderOptions = OPTIONS
) -> tuple[float, float]:
    """Pages/s and CPU ms a page (render processes plus this one) through a RenderPool."""
    async with RenderPool(processes, 2048 * 1024 * 1024, 600) as pool:
        await pool.open(path)  # warm: every process forked, the forkserver running
        before = cpu_seconds(pool.pids) + time.process_time()
        wall = time.perf_counter()
        await _drain(pool, path, indices, options)
        wall = time.perf_counter() - wall
        cpu = cpu_seconds(pool.pids) + time.process_time() - before
    return len(indices) / wall, 1000 * cpu / len(indices)


async def _drain(
    pool: RenderPool, path: str, indices: Iterable[int], options: RenderOptions
) -> int:
    count = 0
    async with contextlib.aclosing(pool.render(path, indices, options)) as pages:
        async for _ in pages:
            count += 1
    return count


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as statm:
            return int(statm.read().split()[1]) * PAGE_BYTES
    except FileNotFoundError:
        return 0


def _parent(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[1])


async def peak_rss(path: str, pages: int) -> tuple[int, float]:
    """Peak summed RSS of this process, the forkserver and pool(2)'s processes, and pages/s."""
    async with RenderPool(2, 2048 * 1024 * 1024, 600) as pool:
        pids = [os.getpid(), _parent(pool.pids[0] or 0), *(pid or 0 for pid in pool.pids)]
        peak, stop = 0, threading.Event()

        def sample() -> None:
            nonlocal peak
            while not stop.is_set():
                peak = max(peak, sum(_rss(pid) for pid in pids))
                time.sleep(0.01)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        wall = time.perf_counter()
        await _drain(pool, path, range(pages), OPTIONS)
        wall = time.perf_counter() - wall
        stop.set()
        sampler.join()
    return peak, pages / wall


def text_raw(path: str) -> float:
    doc = pymupdf.open(path)
    start = time.perf_counter()
    for page in doc:
        page.get_text()
    return doc.page_count / (time.perf_counter() - start)


def pgf_manual(workdir: str) -> str | None:
    for pattern in PGF_MANUALS:
        for found in sorted(glob.glob(pattern)):
            if found.endswith(".gz"):
                target = os.path.join(workdir, "pgfmanual.pdf")
                with gzip.open(found) as packed, open(target, "wb") as out:
                    shutil.copyfileobj(packed, out)
                return target
            return found
    return None


def speed(name: str, path: str, indices: list[int]) -> dict[str, float]:
    print(f"\n{name}: {len(indices)} pages at {OPTIONS.dpi} DPI, WebP q{OPTIONS.quality}")
    figures = {
        "raw (inline, WebP m2)": raw(path, indices),
        "original (PNG -> PIL -> WebP m4)": original(path, indices),
        "pool(1)": asyncio.run(pooled(path, indices, 1)),
        "pool(2)": asyncio.run(pooled(path, indices, 2)),
    }
    for label, (rate, cpu_ms) in figures.items():
        print(f"  {label:34s} {rate:7.1f} pages/s   {cpu_ms:6.1f} CPU ms a page")
    rate = {label.split(" ")[0]: value[0] for label, value in figures.items()}
    print(
        f"  pool(1)/raw {rate['pool(1)'] / rate['raw']:.2f} (target >= 0.85)   "
        f"pool(2)/pool(1) {rate['pool(2)'] / rate['pool(1)']:.2f} (target >= 1.7)   "
        f"pool(2)/original {rate['pool(2)'] / rate['original']:.2f} (target >= 4)"
    )
    return rate


def print_worker(figures: WorkerFigures, rate: dict[str, float], rss_pages: int) -> None:
    """The worker end to end against this run's raw and original baselines."""
    one, two = figures.rate[1], figures.rate[2]
    first = sorted(figures.first_image_ms)
    print("\nworker end to end (python -m worker, GridFS page store), claim to completed:")
    print(f"  RENDER_PROCESSES=1 {one:7.1f} pages/s   RENDER_PROCESSES=2 {two:7.1f} pages/s")
    print(
        f"  worker(1)/raw {one / rate['raw']:.2f} (target >= 0.85)   "
        f"worker(2)/worker(1) {two / one:.2f} (target >= 1.7)   "
        f"worker(2)/original {two / rate['original']:.2f} (target >= 4)"
    )
    print(
        f"  peak RSS of the worker tree: 20 pages {figures.rss_small_mb:.0f} MB, {rss_pages} pages "
        f"{figures.rss_large_mb:.0f} MB, ratio {figures.rss_large_mb / figures.rss_small_mb:.2f}"
        " (target <= 1.3)"
    )
    print(
        f"  enqueue -> first page image fetchable, {len(first)} jobs: "
        f"p50 {statistics.median(first):.0f} ms, max {first[-1]:.0f} ms (target p50 <= 1 s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pages", type=int, default=60, help="figure-heavy PDF pages")
    parser.add_argument("--pgf-pages", type=int, default=60, help="pgfmanual pages sampled")
    parser.add_argument("--rss-pages", type=int, default=2000, help="pages of the long run")
    parser.add_argument("--no-worker", action="store_true", help="skip the worker end to end")
    args = parser.parse_args()
    quiet_mupdf()
    print(f"CPUs {len(os.sched_getaffinity(0))}, load average {os.getloadavg()[0]:.1f} at start")
    with tempfile.TemporaryDirectory(prefix="pcj-bench-") as workdir:
        figures = os.path.join(workdir, "figures.pdf")
        Path(figures).write_bytes(figure_heavy_pdf(args.pages))
        rate = speed("generated figure-heavy PDF", figures, list(range(args.pages)))

        manual = pgf_manual(workdir)
        if manual is None:
            print("\npgfmanual.pdf: not installed (texlive-pictures-doc), skipped")
        else:
            count = pymupdf.open(manual).page_count
            step = max(1, count // args.pgf_pages)
            speed(
                f"pgfmanual.pdf ({count} pages)",
                manual,
                list(range(0, count, step))[: args.pgf_pages],
            )

        long = os.path.join(workdir, "long.pdf")
        Path(long).write_bytes(drawing_pdf(args.rss_pages))
        print(f"\npeak RSS, pool(2), text + drawing pages at {OPTIONS.dpi} DPI WebP:")
        small_peak, small_rate = asyncio.run(peak_rss(long, 20))
        big_peak, big_rate = asyncio.run(peak_rss(long, args.rss_pages))
        print(f"  {20:5d} pages: {small_peak / 2**20:6.0f} MB   ({small_rate:.1f} pages/s)")
        print(f"  {args.rss_pages:5d} pages: {big_peak / 2**20:6.0f} MB   ({big_rate:.1f} pages/s)")
        print(f"  RSS({args.rss_pages})/RSS(20) {big_peak / small_peak:.2f} (target <= 1.3)")

        text_only = RenderOptions(render_images=False)
        text_rate, _ = asyncio.run(pooled(long, list(range(args.rss_pages)), 2, text_only))
        baseline = text_raw(long)
        print(f"\ntext only ({args.rss_pages} pages, what a pdf_file job asks):")
        print(f"  raw get_text() {baseline:7.0f} pages/s   pool(2) {text_rate:7.0f} pages/s")
        if not args.no_worker:
            print_worker(
                asyncio.run(worker_figures(args.pages, args.rss_pages)), rate, args.rss_pages
            )
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":  # the render processes import this module as their __main__
    main()
