"""worker/rendering/page.py on generated PDFs: images at the right size that decode and show the page,
text exactly as PyMuPDF reads it, every warning of a damaged file, and clear errors."""

from __future__ import annotations

import io

import pymupdf
import pytest
from PIL import Image, ImageStat

from service.domain.words import decode_words
from tests.support.pdfs import (
    A4,
    CJK_TEXT,
    LEFT_COLUMN,
    RASTER_RECT,
    RIGHT_COLUMN,
    a4_pdf,
    cjk_pdf,
    cropped_pdf,
    cut_pdf,
    drawing_pdf,
    encrypted_pdf,
    garbage_after_header,
    huge_page_pdf,
    raster_image_pdf,
    rotated_pdf,
    scanned_pdf,
    sized_page_pdf,
    text_pdf,
    truncated_before_pages_pdf,
    truncated_pdf,
    truncated_tail_pdf,
    two_column_pdf,
    zero_page_pdf,
)
from worker.rendering.page import (
    MAX_SIDE,
    DocumentInfo,
    ExtractionError,
    RenderedPage,
    RenderOptions,
    effective_dpi,
    open_document,
    quiet_mupdf,
    render_page,
)

quiet_mupdf()


@pytest.fixture
def render(tmp_path):
    """``render(pdf_bytes, index=0, **options)``: open the PDF from a file and render one page."""
    opened = []

    def run(data: bytes, index: int = 0, **options) -> tuple[DocumentInfo, RenderedPage]:
        path = tmp_path / f"doc{len(opened)}.pdf"
        path.write_bytes(data)
        doc, info = open_document(str(path))
        opened.append(doc)
        return info, render_page(doc, index, RenderOptions(**options))

    yield run
    for doc in opened:
        doc.close()


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def variance(image: Image.Image) -> float:
    return max(ImageStat.Stat(image.convert("RGB")).var)


def near(pixel: tuple[int, ...], colour: tuple[int, int, int], tolerance: int = 25) -> bool:
    """Within lossy-compression distance of ``colour``."""
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, colour, strict=True))


def pymupdf_text(data: bytes, index: int = 0) -> str:
    with pymupdf.open(stream=data, filetype="pdf") as doc:
        return doc[index].get_text()


def test_a4_page_at_150_dpi_is_1241_by_1754_webp_with_a_240_wide_thumbnail(render):
    info, page = render(a4_pdf())

    image = decode(page.image.data)
    thumbnail = decode(page.thumbnail.data)
    assert info.page_count == 1
    assert (page.width_pt, page.height_pt) == pytest.approx(A4)
    assert page.dpi == 150
    assert (page.image.width, page.image.height) == (1241, 1754)
    assert (image.format, image.size) == ("WEBP", (1241, 1754))
    assert page.image.media_type == "image/webp"
    assert (thumbnail.format, thumbnail.size) == ("WEBP", (240, 339))
    assert (page.thumbnail.width, page.thumbnail.height) == thumbnail.size


def test_dpi_option_scales_the_image(render):
    _, page = render(a4_pdf(), dpi=72)

    assert (page.image.width, page.image.height) == (596, 842)
    assert decode(page.image.data).size == (596, 842)


def test_vector_drawing_page_is_drawn_not_blank(render):
    _, page = render(drawing_pdf())

    image = decode(page.image.data)
    assert variance(image) > 100
    # The filled circle (orange, centred at 390, 220 pt) is where the PDF put it.
    assert near(image.getpixel((round(390 * 150 / 72), round(220 * 150 / 72))), (255, 204, 51))
    assert variance(decode(page.thumbnail.data)) > 0


def test_embedded_raster_image_shows_where_it_was_placed(render):
    _, page = render(raster_image_pdf())

    image = decode(page.image.data)
    # The picture's lower half is a red field: RASTER_RECT's lower half on the page.
    x = (RASTER_RECT.x0 + RASTER_RECT.x1) / 2 * 150 / 72
    y = (RASTER_RECT.y1 - 20) * 150 / 72
    assert near(image.getpixel((round(x), round(y))), (220, 30, 30))
    assert near(image.getpixel((20, 20)), (255, 255, 255))  # outside it: white paper


def test_rotated_page_is_rendered_landscape(render):
    _, page = render(rotated_pdf())

    assert (page.width_pt, page.height_pt) == (842, 595)
    assert decode(page.image.data).size == (1755, 1240)
    assert decode(page.thumbnail.data).size == (240, 170)
    assert page.text == pymupdf_text(rotated_pdf())


def test_huge_page_is_rendered_at_a_lower_dpi_within_max_pixels(render):
    _, page = render(huge_page_pdf())

    image = decode(page.image.data)
    assert 1 < page.dpi < 150
    assert image.width == image.height
    assert 10_000_000 < image.width * image.height <= 12_000_000
    assert image.width == pytest.approx(14_400 * page.dpi / 72, abs=2)
    assert page.error is None
    assert variance(image) > 0


def test_a_page_huge_through_user_unit_renders_below_1_dpi_within_max_pixels(render):
    # 14,400 units of 75,000 points: a side of 1.08 x 10^9 points, 2.25 x 10^9 pixels at 150 DPI.
    _, page = render(sized_page_pdf(14_400, 14_400, user_unit=75_000))

    image = decode(page.image.data)
    assert page.width_pt == 1.08e9
    assert 0 < page.dpi < 0.001
    assert 10_000_000 < image.width * image.height <= 12_000_000
    assert image.width == pytest.approx(1.08e9 * page.dpi / 72, abs=2)
    assert near(image.getpixel((2, image.height - 3)), (0, 0, 255))  # the square, bottom left
    assert page.error is None


def test_a_long_strip_renders_within_the_image_formats_longest_side(render):
    # 200 x 2 inches: 9 megapixels at 150 DPI, but 30,001 pixels long, past WebP's 16,383.
    _, page = render(sized_page_pdf(14_400, 144))

    image = decode(page.image.data)
    assert page.error is None
    assert image.width <= MAX_SIDE["webp"]
    assert image.width > 16_000
    assert page.dpi < 150


@pytest.mark.parametrize(
    ("width", "height"),
    [(612, 792), (14_400, 14_400), (1.08e9, 1.08e9), (1.08e9, 75_000), (75_000, 1.08e9),
     (14_400, 1), (1, 14_400), (16_000, 1.5), (0.5, 0.5), (123_456.7, 89.1)],
)  # fmt: skip
@pytest.mark.parametrize("image_format", ["webp", "jpeg"])
def test_effective_dpi_fits_every_page_shape_within_pixels_and_side(width, height, image_format):
    options = RenderOptions(image_format=image_format, max_pixels=12_000_000)

    dpi = effective_dpi(width, height, options)

    zoom = dpi / 72
    sides = [int(-(-side * zoom // 1)) + 1 for side in (width, height)]  # MuPDF rounds out
    assert 0 < dpi <= 150
    assert sides[0] * sides[1] <= 12_000_000
    assert max(sides) <= MAX_SIDE[image_format]


@pytest.mark.parametrize(
    ("width", "height"), [(200_000, 1), (0, 100), (float("inf"), 10), (float("nan"), 10)]
)
def test_effective_dpi_refuses_a_page_no_image_can_show(width, height):
    with pytest.raises(ExtractionError) as refused:
        effective_dpi(width, height, RenderOptions())

    assert refused.value.code == "PAGE_TOO_LARGE"


def test_a_page_that_fits_no_image_fails_with_page_too_large_naming_it(render):
    # 200,000 x 1 units: one pixel across is already 200,000 pixels along.
    with pytest.raises(ExtractionError) as failed:
        render(sized_page_pdf(200_000, 1))

    assert failed.value.code == "PAGE_TOO_LARGE"
    assert failed.value.reason == (
        "PDF page 1 cannot be rendered: 200000 x 1 pt fits no image within PAGE_MAX_PIXELS "
        "(12000000) and webp's 16383-pixel side"
    )


def test_max_pixels_option_caps_an_ordinary_page_too(render):
    _, page = render(a4_pdf(), max_pixels=500_000)

    assert page.image.width * page.image.height <= 500_000
    assert page.dpi < 150


def test_cjk_text_is_extracted_and_drawn(render):
    _, page = render(cjk_pdf())

    assert page.text.strip() == CJK_TEXT
    assert page.text == pymupdf_text(cjk_pdf())
    assert page.has_text is True
    assert variance(decode(page.image.data)) > 0


def test_scanned_page_has_an_image_and_no_text(render):
    _, page = render(scanned_pdf())

    # OCR ran ("auto": no text layer) and found no words in its word-shaped rectangles.
    assert page.has_text is False
    assert (page.text_source, page.ocr_confidence) == ("none", None)
    assert page.text.strip() == ""
    assert variance(decode(page.image.data)) > 100
    assert page.image.width == 1240


@pytest.mark.parametrize(
    "make", [a4_pdf, drawing_pdf, raster_image_pdf, rotated_pdf, cjk_pdf, scanned_pdf]
)
def test_text_is_exactly_what_pymupdf_reads(render, make):
    data = make()

    _, page = render(data)

    assert page.text == pymupdf_text(data)
    assert page.has_text == bool(page.text.strip())


def test_jpeg_option_gives_jpeg_page_and_thumbnail(render):
    _, page = render(drawing_pdf(), image_format="jpeg", quality=70)

    image = decode(page.image.data)
    assert (image.format, image.size) == ("JPEG", (1240, 1755))
    assert page.image.media_type == "image/jpeg"
    assert decode(page.thumbnail.data).format == "JPEG"
    assert variance(image) > 100


def test_render_images_off_reads_text_only(render):
    _, page = render(drawing_pdf(), render_images=False)

    assert page.image is None
    assert page.thumbnail is None
    assert page.dpi == 0
    assert page.text == pymupdf_text(drawing_pdf())


def test_truncated_file_is_flagged_repaired_with_its_warnings(render):
    info, page = render(truncated_tail_pdf(), index=3)

    assert info.repaired is True
    assert info.page_count == 5
    assert "trying to repair broken xref" in info.warnings
    assert page.repaired is True
    assert "Page 4 of 5" in page.text


def test_every_warning_of_a_damaged_page_is_kept_not_only_errors(render, tmp_path):
    path = tmp_path / "cut.pdf"
    path.write_bytes(cut_pdf(0.5))
    doc, _ = open_document(str(path))

    pages = [render_page(doc, index, RenderOptions(render_images=False)) for index in range(5)]

    warned = [page for page in pages if page.warnings]
    assert warned, "a file cut in half renders without a single warning"
    # What the old rule (keep messages containing "error") dropped, and left blank pages
    # looking fine: warnings that never say "error".
    assert any(not any("error" in w for w in page.warnings) for page in warned)
    assert any("premature end of data" in w for page in warned for w in page.warnings)
    doc.close()


def test_a_page_that_cannot_be_read_reports_its_error_and_the_next_page_renders(tmp_path):
    doc = pymupdf.open(stream=text_pdf(3), filetype="pdf")
    doc.xref_set_key(doc[1].xref, "Contents", "[ 99999 0 R ]")  # page 2 points at nothing
    path = tmp_path / "bad-page.pdf"
    path.write_bytes(doc.tobytes())
    doc.close()
    doc, _ = open_document(str(path))

    bad = render_page(doc, 1, RenderOptions())
    good = render_page(doc, 2, RenderOptions())

    assert any("not a stream" in warning for warning in bad.warnings)
    assert bad.image is not None  # a blank page, drawn
    assert good.warnings == ()
    assert "Page 3 of 3" in good.text
    doc.close()


@pytest.mark.parametrize(
    ("make", "code", "reason"),
    [
        (truncated_before_pages_pdf, "PDF_CORRUPT", "PDF is corrupt or truncated"),
        (truncated_pdf, "PDF_CORRUPT", "PDF is corrupt or truncated"),
        (garbage_after_header, "PDF_CORRUPT", "PDF is corrupt or truncated"),
        (encrypted_pdf, "PDF_ENCRYPTED", "PDF is encrypted"),
        (zero_page_pdf, "PDF_EMPTY", "PDF has no pages"),
    ],
)
def test_a_document_that_cannot_be_read_says_why(tmp_path, make, code, reason):
    path = tmp_path / "bad.pdf"
    path.write_bytes(make())

    with pytest.raises(ExtractionError) as caught:
        open_document(str(path))

    assert (caught.value.code, caught.value.reason) == (code, reason)


def test_a_cut_off_file_with_no_pages_left_is_corrupt_but_an_empty_one_is_empty(tmp_path):
    cut, empty = tmp_path / "cut.pdf", tmp_path / "empty.pdf"
    cut.write_bytes(truncated_before_pages_pdf())
    empty.write_bytes(zero_page_pdf())

    with pymupdf.open(str(cut)) as doc:
        opened_cut = (doc.page_count, doc.is_repaired)
    with pytest.raises(ExtractionError) as cut_error:
        open_document(str(cut))
    with pytest.raises(ExtractionError) as empty_error:
        open_document(str(empty))

    assert opened_cut == (0, True)  # MuPDF opens it, repaired, with nothing in it
    assert cut_error.value.code == "PDF_CORRUPT"
    assert empty_error.value.code == "PDF_EMPTY"


# Positioned words of a page's own text (OCR's are tests/worker/test_ocr.py's).


@pytest.mark.parametrize(
    "make", [a4_pdf, rotated_pdf, huge_page_pdf, cropped_pdf, two_column_pdf, cjk_pdf]
)
def test_words_are_the_text_split_and_boxed_on_the_image(render, make):
    _, page = render(make())
    image = decode(page.image.data).convert("L")

    words = decode_words(page.words)

    assert page.text_source == "pdf"
    assert (page.words_width, page.words_height) == image.size
    assert [word.text for word in words] == page.text.split()
    for word in words:
        assert 0 <= word.x0 < word.x1 <= image.width
        assert 0 <= word.y0 < word.y1 <= image.height
        assert image.crop(word[:4]).getextrema()[0] < 128, word  # ink where the word is


def test_words_of_a_turned_page_run_down_its_image(render):
    _, page = render(rotated_pdf())

    turned, sideways = decode_words(page.words)

    # /Rotate 90: the line reads top to bottom on the landscape image, at its right.
    assert (turned.text, sideways.text) == ("Turned", "sideways")
    assert turned.x0 == sideways.x0
    assert turned.y1 <= sideways.y0
    assert turned.y1 - turned.y0 > turned.x1 - turned.x0
    assert turned.x0 > page.words_width / 2


def test_words_outside_the_crop_box_are_not_on_the_image(render):
    _, page = render(cropped_pdf())

    words = decode_words(page.words)

    assert " ".join(word.text for word in words) == "Inside the crop box"
    # Drawn at (150, 260) pt on a page whose crop box starts at (100, 150): 50 pt in, 150 DPI.
    assert words[0].x0 == pytest.approx(50 * 150 / 72, abs=2)


def test_a_two_column_page_has_its_words_column_by_column(render):
    _, page = render(two_column_pdf())
    middle = page.words_width / 2

    words = decode_words(page.words)

    assert " ".join(word.text for word in words) == f"{LEFT_COLUMN} {RIGHT_COLUMN}"
    assert [w.block for w in words] == [0] * len(LEFT_COLUMN.split()) + [1] * len(
        RIGHT_COLUMN.split()
    )
    assert all(w.x1 <= middle for w in words if w.block == 0)
    assert all(w.x0 >= middle for w in words if w.block == 1)
    firsts = [w for i, w in enumerate(words) if i == 0 or w.line != words[i - 1].line]
    assert [(w.block, w.line) for w in firsts] == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    assert [w.y0 for w in firsts[:3]] == sorted(w.y0 for w in firsts[:3])


@pytest.mark.parametrize("make", [a4_pdf, rotated_pdf, huge_page_pdf, cropped_pdf])
def test_a_page_without_its_image_has_words_sized_as_the_image_would_be(render, make):
    _, with_image = render(make())
    _, without = render(make(), render_images=False)

    assert without.image is None
    assert (without.words_width, without.words_height) == (
        with_image.image.width,
        with_image.image.height,
    )
    assert without.words == with_image.words
