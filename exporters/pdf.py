"""PDF: a paginated table (reportlab), header row repeated on every page, title on top,
title, generated-at and page number in every page's footer.

PDF is for small exports: ``max_rows`` (``EXPORTFLOW_PDF_MAX_ROWS``, default 10,000) is checked
against the preliminary count before the first row is read, and a bigger request is rejected
with a message suggesting XLSX or CSV. Within that cap the sink keeps the rows as short text
and lays the table out at ``close()`` (reportlab needs the whole story to paginate).

Cells are single-line text cut with ``…`` to their column's width; widths are shared out by
the longest value seen per column. Text is set in DejaVu Sans (or the Vera font reportlab
ships) so non-Latin-1 text keeps its glyphs.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.compute as pc

from core.errors import InvalidRequest
from core.types import Column
from exporters.base import WriteOptions, header_names

FONT_SIZE = 7.0
MAX_CELL_CHARS = 80
_FONT_CANDIDATES = (
    Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
    Path("/usr/share/fonts/TTF/DejaVuSans.ttf"),
)


def _font() -> tuple[str, str]:
    """(regular, bold) font names, registering a Unicode TrueType font once."""
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont

    if "ExportSans" in pdfmetrics.getRegisteredFontNames():
        return "ExportSans", "ExportSans-Bold"
    regular = next((p for p in _FONT_CANDIDATES if p.exists()), None)
    if regular is not None:
        bold = regular.with_name("DejaVuSans-Bold.ttf")
        pdfmetrics.registerFont(TTFont("ExportSans", str(regular)))
        pdfmetrics.registerFont(TTFont("ExportSans-Bold", str(bold if bold.exists() else regular)))
    else:
        pdfmetrics.registerFont(TTFont("ExportSans", "Vera.ttf"))
        pdfmetrics.registerFont(TTFont("ExportSans-Bold", "VeraBd.ttf"))
    return "ExportSans", "ExportSans-Bold"


def cell_text(column: Column, array: pa.Array) -> list[str]:
    """The text each value shows in the table (NULL -> empty), at most one line long."""
    if column.type == "timestamp":
        seconds = pc.cast(array, pa.timestamp("s", tz="UTC"), safe=False)
        array = pc.strftime(seconds, format="%Y-%m-%d %H:%M:%S")
    elif column.type == "float":
        finite = pc.is_finite(array)
        array = pc.if_else(finite, pc.cast(array, pa.string()), pa.scalar(None, pa.string()))
    elif column.type == "bool":
        array = pc.if_else(array, pa.scalar("true"), pa.scalar("false"))
    else:
        array = pc.cast(array, pa.string())
    array = pc.replace_substring_regex(pc.fill_null(array, ""), "[\\r\\n\\t]+", " ")
    long = pc.greater(pc.utf8_length(array), MAX_CELL_CHARS)
    if pc.any(long).as_py():
        cut = pc.binary_join_element_wise(
            pc.utf8_slice_codeunits(array, 0, MAX_CELL_CHARS - 1), pa.scalar("…"), ""
        )
        array = pc.if_else(long, cut, array)
    values: list[str] = array.to_pylist()
    return values


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
        self._widths = [len(h) for h in self._header]

    def write(self, batch: pa.RecordBatch) -> None:
        if len(self._rows) + batch.num_rows > self._max_rows:
            raise InvalidRequest(
                f"PDF exports are limited to {self._max_rows:,} rows; use xlsx or csv",
                key="too_many_rows_for_pdf",
            )
        texts = [cell_text(c, a) for c, a in zip(self._columns, batch.columns, strict=True)]
        for i, values in enumerate(texts):
            self._widths[i] = max(self._widths[i], max((len(v) for v in values), default=0))
        self._rows.extend(map(list, zip(*texts, strict=True)))

    def close(self) -> dict[str, Any]:
        from reportlab.lib import colors
        from reportlab.lib.pagesizes import A4, landscape
        from reportlab.lib.styles import ParagraphStyle
        from reportlab.lib.units import mm
        from reportlab.pdfbase.pdfmetrics import stringWidth
        from reportlab.platypus import LongTable, Paragraph, SimpleDocTemplate, Spacer, TableStyle

        regular, bold = _font()
        generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        page_w, page_h = landscape(A4)
        margin = 12 * mm
        usable = page_w - 2 * margin
        weights = [max(4, min(w, MAX_CELL_CHARS)) for w in self._widths]
        col_widths = [usable * w / sum(weights) for w in weights]
        rows = [self._fit(r, col_widths, regular, stringWidth) for r in self._rows]
        header = self._fit(self._header, col_widths, bold, stringWidth)

        def footer(canvas: Any, doc: Any) -> None:
            canvas.saveState()
            canvas.setFont(regular, 7)
            canvas.drawString(margin, 7 * mm, f"{self._title} · generated {generated}")
            canvas.drawRightString(page_w - margin, 7 * mm, f"Page {doc.page}")
            canvas.restoreState()

        table = LongTable([header, *rows], colWidths=col_widths, repeatRows=1)
        table.setStyle(
            TableStyle(
                [
                    ("FONT", (0, 0), (-1, -1), regular, FONT_SIZE),
                    ("FONT", (0, 0), (-1, 0), bold, FONT_SIZE),
                    ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#D9E1F2")),
                    ("GRID", (0, 0), (-1, -1), 0.25, colors.grey),
                    ("VALIGN", (0, 0), (-1, -1), "TOP"),
                    ("TOPPADDING", (0, 0), (-1, -1), 1.5),
                    ("BOTTOMPADDING", (0, 0), (-1, -1), 1.5),
                ]
            )
        )
        title = Paragraph(
            _escape(self._title), ParagraphStyle("title", fontName=bold, fontSize=13, leading=16)
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
        doc.build([title, Spacer(1, 4 * mm), table], onFirstPage=footer, onLaterPages=footer)
        return {"pages": doc.page}

    @staticmethod
    def _fit(row: list[str], widths: list[float], font: str, measure: Any) -> list[str]:
        """Cut each cell with ``…`` so it fits its column on one line."""
        out = []
        for text, width in zip(row, widths, strict=True):
            room = width - 6
            if measure(text, font, FONT_SIZE) > room:
                while text and measure(text + "…", font, FONT_SIZE) > room:
                    text = text[: max(0, int(len(text) * 0.9))]
                text += "…"
            out.append(text)
        return out


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def open_sink(out: BinaryIO, columns: Sequence[Column], options: WriteOptions) -> PdfSink:
    """The pdf writer (registry row ``core.formats.FORMATS["pdf"]``)."""
    return PdfSink(out, columns, options, options.max_rows)
