"""PDF: a paginated table (reportlab) worth printing: header row repeated on every page, title
on top, and "title · generated at" and "Page n of N" in every page's footer.

PDF is for small exports: ``max_rows`` (``EXPORTFLOW_PDF_MAX_ROWS``, default 10,000) is checked
against the preliminary count before the first row is read, and a bigger request is rejected
with a message suggesting XLSX or CSV. Within that cap the sink keeps the rows as text and lays
the table out at ``close()`` (reportlab needs the whole story to paginate).

Layout:

- column widths follow the content: a column of numbers, dates or timestamps is as wide as its
  widest value (those never wrap); text columns share the rest of the page in proportion to
  the 90th percentile of their values' widths, between a minimum and a maximum width;
- a value that does not fit its column wraps onto more lines (words longer than the column are
  split), so no value is cut; a row taller than a page continues on the next one. Only text
  over ``MAX_CELL_CHARS`` characters is cut, with a visible marker, and counted in the job
  result as ``truncated_cells``;
- numbers (int, float, decimal) are right-aligned; text keeps its line breaks;
- text is set in DejaVu Sans (or the Vera font reportlab ships) so non-Latin-1 text keeps its
  glyphs; runs of Chinese, Japanese or Korean characters are set in one of reportlab's
  built-in CID fonts (Japanese when the cell has kana or only JIS kanji, Korean for hangul,
  Simplified Chinese otherwise), which viewers provide, so nothing is downloaded or embedded;
- "Page n of N" needs the page count before the first page is final: the canvas keeps every
  page's state and draws the footers when the document is saved (reportlab's two-pass
  ``canvasmaker`` recipe).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.compute as pc

from core.errors import InvalidRequest
from core.types import Column
from exporters.base import TEMPORAL, WriteOptions, header_names, iso_text

FONT_SIZE = 7.0
LEADING = 8.5
MAX_CELL_CHARS = 1_000
TRUNCATION_MARKER = " …[truncated]"
PADDING = 3.0
"""Left and right padding of every cell, in points."""
MIN_TEXT_WIDTH = 40.0
"""Narrowest text column, in points (about 10 characters)."""
MAX_TEXT_SHARE = 0.45
"""Widest text column, as a share of the page's usable width."""

NUMERIC = frozenset({"int", "float", "decimal"})
UNBREAKABLE = NUMERIC | {"timestamp", "date", "bool"}

CJK_FONTS = {"ja": "HeiseiKakuGo-W5", "zh": "STSong-Light", "ko": "HYGothic-Medium"}
_CJK = re.compile(
    "[\u1100-\u11ff\u2e80-\u2fdf\u3000-\u30ff\u3130-\u318f\u31f0-\u31ff\u3400-\u4dbf"
    "\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef\U00020000-\U0003134f]+"
)
_KANA = re.compile("[\u3040-\u30ff\u31f0-\u31ff\uff66-\uff9f]")
_HANGUL = re.compile("[\u1100-\u11ff\u3130-\u318f\uac00-\ud7af]")
_FONT_CANDIDATES = (
    Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
    Path("/usr/share/fonts/TTF/DejaVuSans.ttf"),
)


def _font() -> tuple[str, str]:
    """(regular, bold) font names, registering a Unicode TrueType font and the CJK fonts once."""
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.pdfbase.ttfonts import TTFont

    if "ExportSans" in pdfmetrics.getRegisteredFontNames():
        return "ExportSans", "ExportSans-Bold"
    for name in CJK_FONTS.values():
        pdfmetrics.registerFont(UnicodeCIDFont(name))
    regular = next((p for p in _FONT_CANDIDATES if p.exists()), None)
    if regular is not None:
        bold = regular.with_name("DejaVuSans-Bold.ttf")
        pdfmetrics.registerFont(TTFont("ExportSans", str(regular)))
        pdfmetrics.registerFont(TTFont("ExportSans-Bold", str(bold if bold.exists() else regular)))
    else:
        pdfmetrics.registerFont(TTFont("ExportSans", "Vera.ttf"))
        pdfmetrics.registerFont(TTFont("ExportSans-Bold", "VeraBd.ttf"))
    return "ExportSans", "ExportSans-Bold"


def cjk_font(text: str) -> str | None:
    """The CID font for the CJK characters in ``text``, or None if it has none."""
    if not _CJK.search(text):
        return None
    if _HANGUL.search(text):
        return CJK_FONTS["ko"]
    if _KANA.search(text):
        return CJK_FONTS["ja"]
    try:
        "".join(_CJK.findall(text)).encode("euc_jp")
    except UnicodeEncodeError:
        return CJK_FONTS["zh"]
    return CJK_FONTS["ja"]


def cell_text(column: Column, array: pa.Array) -> tuple[list[str], int]:
    """The text each value shows in the table (NULL -> empty, line breaks kept as ``\\n``) and
    how many values were cut at ``MAX_CELL_CHARS``."""
    if column.type in TEMPORAL:
        array = iso_text(array)
        if column.type == "timestamp":  # to the second: without T, fraction and Z
            array = pc.replace_substring_regex(array, r"^(.+)T(\d\d:\d\d:\d\d)\.\d+Z$", r"\1 \2")
    elif column.type == "float":
        finite = pc.is_finite(array)
        array = pc.if_else(finite, pc.cast(array, pa.string()), pa.scalar(None, pa.string()))
    elif column.type == "bool":
        array = pc.if_else(array, pa.scalar("true"), pa.scalar("false"))
    else:
        array = pc.cast(array, pa.string())
    array = pc.replace_substring_regex(pc.fill_null(array, ""), "\\r\\n?", "\n")
    array = pc.replace_substring(array, "\t", " ")
    long = pc.greater(pc.utf8_length(array), MAX_CELL_CHARS)
    cut = int(pc.sum(long).as_py() or 0)
    if cut:
        keep = MAX_CELL_CHARS - len(TRUNCATION_MARKER)
        marked = pc.binary_join_element_wise(
            pc.utf8_slice_codeunits(array, 0, keep), pa.scalar(TRUNCATION_MARKER), ""
        )
        array = pc.if_else(long, marked, array)
    values: list[str] = array.to_pylist()
    return values, cut


@dataclass(frozen=True)
class _Fonts:
    regular: str
    bold: str

    def width(self, text: str, bold: bool = False) -> float:
        """Width in points of ``text`` on one line (the longest line if it has several)."""
        from reportlab.pdfbase.pdfmetrics import stringWidth

        font = cjk_font(text) or (self.bold if bold else self.regular)
        return max(float(stringWidth(line, font, FONT_SIZE)) for line in text.split("\n"))


def column_widths(
    columns: Sequence[Column], header: list[str], rows: list[list[str]], usable: float
) -> list[float]:
    """Widths in points that fit ``usable``: unbreakable columns as wide as their widest value;
    text columns get the 90th percentile of their values' widths, then what is left of the
    page goes to those whose longer values would otherwise wrap."""
    fonts = _Fonts(*_font())
    pad = 2 * PADDING + 1
    widest_text = usable * MAX_TEXT_SHARE
    fixed: dict[int, float] = {}
    base: dict[int, float] = {}
    most: dict[int, float] = {}
    for i, (column, title) in enumerate(zip(columns, header, strict=True)):
        words = max((fonts.width(w, bold=True) for w in title.split()), default=0.0) + pad
        sizes = sorted(fonts.width(row[i]) for row in rows) or [0.0]
        if column.type in UNBREAKABLE:
            fixed[i] = max(sizes[-1] + pad, words)
            continue
        robust = sizes[min(len(sizes) - 1, int(len(sizes) * 0.9))] + pad
        base[i] = min(max(robust, words, MIN_TEXT_WIDTH), widest_text)
        most[i] = min(max(sizes[-1] + pad, base[i]), widest_text)
    room = usable - sum(fixed.values())
    if sum(fixed.values()) + sum(base.values()) <= usable:
        wanted = sum(most[i] - base[i] for i in base)
        grow = min(1.0, (room - sum(base.values())) / wanted) if wanted else 0.0
        widths = {**fixed, **{i: b + (most[i] - b) * grow for i, b in base.items()}}
    elif room >= MIN_TEXT_WIDTH * len(base):
        widths = {**fixed, **_share(base, room)}
    else:  # too many columns for the page: everything shrinks alike, numbers may wrap
        total = sum(fixed.values()) + sum(base.values())
        widths = {i: w * usable / total for i, w in {**fixed, **base}.items()}
    return [widths[i] for i in range(len(columns))]


def _share(weights: dict[int, float], room: float) -> dict[int, float]:
    """Share ``room`` in proportion to ``weights``, none below ``MIN_TEXT_WIDTH``."""
    out: dict[int, float] = {}
    pending = dict(weights)
    while pending:
        scale = room / sum(pending.values())
        small = {i: w for i, w in pending.items() if w * scale < MIN_TEXT_WIDTH}
        if not small:
            out.update({i: w * scale for i, w in pending.items()})
            break
        for i in small:
            out[i] = MIN_TEXT_WIDTH
            room -= MIN_TEXT_WIDTH
            del pending[i]
    return out


def _markup(text: str) -> str:
    """Paragraph markup for plain text: escaped, line breaks kept, CJK runs in a CID font."""
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    font = cjk_font(text)
    if font is not None:
        escaped = _CJK.sub(lambda m: f'<font face="{font}">{m.group(0)}</font>', escaped)
    return escaped.replace("\n", "<br/>")


def _numbered_canvas(footer_left: str, font: str, margin: float) -> Any:
    """A canvas class that keeps each page and, on save, writes the footer with "Page n of N"
    (reportlab's two-pass recipe: the page count is only known at the end)."""
    from reportlab.pdfgen.canvas import Canvas

    class NumberedCanvas(Canvas):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._pages: list[dict[str, Any]] = []

        def showPage(self) -> None:
            self._pages.append(dict(self.__dict__))
            self._startPage()

        def save(self) -> None:
            total = len(self._pages)
            for state in self._pages:
                self.__dict__.update(state)
                self._footer(total)
                super().showPage()
            super().save()

        def _footer(self, total: int) -> None:
            right, baseline = self._pagesize[0] - margin, margin * 7 / 12
            self.saveState()
            self.setFont(font, 7)
            self.drawString(margin, baseline, footer_left)
            self.drawRightString(right, baseline, f"Page {self._pageNumber} of {total}")
            self.restoreState()

    return NumberedCanvas


class PdfSink:
    def __init__(
        self,
        out: BinaryIO,
        columns: Sequence[Column],
        options: WriteOptions,
        max_rows: int | None,
    ) -> None:
        self._out = out
        self._columns = list(columns)
        self._title = options.title or options.subject
        self._header = header_names(columns, options, default="labels")
        self._max_rows = max_rows or 10_000
        self._rows: list[list[str]] = []
        self.truncated_cells = 0

    def write(self, batch: pa.RecordBatch) -> None:
        if len(self._rows) + batch.num_rows > self._max_rows:
            raise InvalidRequest(
                f"PDF exports are limited to {self._max_rows:,} rows; use xlsx or csv",
                key="too_many_rows_for_pdf",
            )
        texts = []
        for column, array in zip(self._columns, batch.columns, strict=True):
            values, cut = cell_text(column, array)
            texts.append(values)
            self.truncated_cells += cut
        self._rows.extend(map(list, zip(*texts, strict=True)))

    def abandon(self) -> None:
        self._rows.clear()

    def close(self) -> dict[str, Any]:
        from reportlab.lib import colors
        from reportlab.lib.enums import TA_RIGHT
        from reportlab.lib.pagesizes import A4, landscape
        from reportlab.lib.styles import ParagraphStyle
        from reportlab.lib.units import mm
        from reportlab.platypus import LongTable, Paragraph, SimpleDocTemplate, Spacer, TableStyle

        regular, bold = _font()
        fonts = _Fonts(regular, bold)
        generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        page_w, page_h = landscape(A4)
        margin = 12 * mm
        widths = column_widths(self._columns, self._header, self._rows, page_w - 2 * margin)

        def style(name: str, font: str, right: bool = False) -> ParagraphStyle:
            return ParagraphStyle(
                name,
                fontName=font,
                fontSize=FONT_SIZE,
                leading=LEADING,
                alignment=TA_RIGHT if right else 0,
                splitLongWords=1,
            )

        numeric = [c.type in NUMERIC for c in self._columns]
        text_styles = {False: style("cell", regular), True: style("number", regular, True)}
        head_styles = {False: style("head", bold), True: style("head-number", bold, True)}

        def cell(text: str, width: float, right: bool) -> Any:
            # A plain string is drawn as is and is much cheaper than a Paragraph: only text that
            # must wrap, keeps line breaks or needs a CJK font becomes one.
            if "\n" in text or cjk_font(text) or fonts.width(text) > width - 2 * PADDING:
                return Paragraph(_markup(text), text_styles[right])
            return text

        header = [
            Paragraph(_markup(h), head_styles[r])
            for h, r in zip(self._header, numeric, strict=True)
        ]
        rows = [
            [cell(t, w, r) for t, w, r in zip(row, widths, numeric, strict=True)]
            for row in self._rows
        ]
        commands: list[tuple[Any, ...]] = [
            ("FONT", (0, 0), (-1, -1), regular, FONT_SIZE, LEADING),
            ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#D9E1F2")),
            ("GRID", (0, 0), (-1, -1), 0.25, colors.grey),
            ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ("LEFTPADDING", (0, 0), (-1, -1), PADDING),
            ("RIGHTPADDING", (0, 0), (-1, -1), PADDING),
            ("TOPPADDING", (0, 0), (-1, -1), 1.5),
            ("BOTTOMPADDING", (0, 0), (-1, -1), 1.5),
        ]
        commands += [("ALIGN", (i, 1), (i, -1), "RIGHT") for i, n in enumerate(numeric) if n]
        table = LongTable(
            [header, *rows], colWidths=widths, repeatRows=1, splitInRow=1, hAlign="LEFT"
        )
        table.setStyle(TableStyle(commands))
        title = Paragraph(
            _markup(self._title), ParagraphStyle("title", fontName=bold, fontSize=13, leading=16)
        )
        doc = SimpleDocTemplate(
            self._out,
            pagesize=(page_w, page_h),
            leftMargin=margin,
            rightMargin=margin,
            topMargin=margin,
            bottomMargin=14 * mm,
            title=self._title,
            author="exportflow",
        )
        canvas = _numbered_canvas(f"{self._title} · generated {generated}", regular, margin)
        doc.build([title, Spacer(1, 4 * mm), table], canvasmaker=canvas)
        return {"pages": doc.page, "truncated_cells": self.truncated_cells}


def open_sink(out: BinaryIO, columns: Sequence[Column], options: WriteOptions) -> PdfSink:
    """The pdf writer (registry row ``core.formats.FORMATS["pdf"]``)."""
    return PdfSink(out, columns, options, options.max_rows)
