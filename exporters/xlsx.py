"""XLSX: a streaming SpreadsheetML writer whose cell XML is built by Arrow kernels.

Chosen over openpyxl ``write_only`` and xlsxwriter ``constant_memory`` because it is an order
of magnitude faster at the same constant memory (numbers in ``bench/xlsx_writers.py``): each
chunk becomes its ``<row>`` XML column-wise in C++, like the JSON encoder, with no per-cell
Python. What the file holds:

- a bold, filled header row of human labels (``header="names"`` for field names), frozen;
  an optional bold title row above it;
- numbers as numbers (decimals keep a ``0.00``-style format of their scale), timestamps as
  Excel date-times (UTC) and dates as Excel dates, booleans as booleans; a timestamp or date
  Excel cannot show as one (before 1900-03-01, from 10000 AD, ``infinity``) is a text cell
  with the CSV's ISO 8601 text instead of a number Excel would show wrong or as ``####``;
- every text cell an inline *string* cell (``t="inlineStr"``), written as is: a spreadsheet
  never evaluates a string cell, so text starting with ``=``, ``+``, ``-`` or ``@`` is shown,
  not run, and needs no CSV-style ``'`` prefix (which Excel and LibreOffice would display);
  no formula cell is ever written, and ``neutralize_formulas`` (a CSV option) is ignored;
- text over 32,767 characters (Excel's cell limit) cut with a visible marker and counted in
  the job result as ``truncated_cells``;
- past 1,048,576 rows the data continues on a new sheet ("Export (2)", ...), never truncated;
- column widths estimated from the streamed values of each sheet, and each sheet's used range
  (``<dimension>``) ahead of its rows, so readers know its size without reading it.

Each sheet's rows go to a temp file first, because ``<cols>`` (the widths) precedes
``<sheetData>`` in the sheet XML; a full sheet is then deflated into the ZIP (itself spooled
to a seekable temp file, so every entry has its sizes up front) and its temp file dropped.
Memory holds one slice of a chunk; disk holds one sheet's XML plus the compressed file.
"""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from collections.abc import Sequence
from typing import IO, Any, BinaryIO
from xml.sax.saxutils import escape, quoteattr

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from core.pgtime import days_from_civil
from core.types import Column
from exporters.base import WriteOptions, header_names, iso_text

MAX_SHEET_ROWS = 1_048_576
MAX_CELL_CHARS = 32_767
TRUNCATION_MARKER = " …[truncated]"
MAX_WIDTH = 60
SHEET_NAME = "Export"

_US_PER_DAY = 86_400_000_000
_EXCEL_EPOCH_DAYS = 25_569  # 1970-01-01 as an Excel serial date
_EXCEL_DAYS = (days_from_civil(1900, 3, 1), days_from_civil(10_000, 1, 1))
"""The days since 1970 an Excel date shows as itself: its serials end at 9999-12-31, and
before 1900-03-01 they are off by Excel's 1900 leap-year bug (day 60 is a 29 February)."""
_XML_ILLEGAL = "[\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f]"
_NS = 'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'
_NS_R = 'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"'
_DECL = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'

# cellXfs indexes in styles.xml; decimal formats follow from _FIRST_DECIMAL_STYLE on.
_STYLE_HEADER = 1
_STYLE_DATETIME = 2
_STYLE_DATE = 3
_STYLE_TITLE = 4
_FIRST_DECIMAL_STYLE = 5

_SLICE_ROWS = 8_192
"""Rows turned into XML at a time: bounds the intermediate arrays whatever the chunk size."""

_FIXED_WIDTHS = {"timestamp": 19, "date": 10, "bool": 5}


def _dates_or_text(
    stored: pa.Array, low: int, end: int, head: str, serial: pa.Array, array: pa.Array
) -> tuple[tuple[Any, Any, Any], pa.Array, int]:
    """Date cells (style ``head``, value ``serial``) where ``low <= stored < end``; text
    cells of the ISO 8601 text (``infinity``, ``0044-03-15``) elsewhere, where Excel would
    show a wrong date or ``####``."""
    kind = "timestamp" if pa.types.is_timestamp(array.type) else "date"
    width = _FIXED_WIDTHS[kind]
    shown = pc.and_(pc.greater_equal(stored, low), pc.less(stored, end))
    if pc.all(shown).as_py() is not False:  # every value (nulls aside) is a date Excel shows
        return ('<c r="', head, "</v></c>"), serial, width
    text = iso_text(array)
    cells = (
        '<c r="',
        pc.if_else(shown, head, '" t="inlineStr"><is><t>'),
        pc.if_else(shown, "</v></c>", "</t></is></c>"),
    )
    return cells, pc.if_else(shown, serial, text), max(width, _max_length(text))


def column_letter(index: int) -> str:
    """0 -> ``A``, 25 -> ``Z``, 26 -> ``AA``."""
    letters = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        letters = chr(65 + rem) + letters
    return letters


def xml_text(array: pa.Array) -> pa.Array:
    """Escape text for an XML element: ``& < >``, CR kept as ``&#13;``, other control
    characters (illegal in XML 1.0) and literal ``_xHHHH_`` in OOXML's ``_xHHHH_`` form."""
    if pc.any(pc.match_substring_regex(array, "_x[0-9A-Fa-f]{4}_")).as_py():
        array = pc.replace_substring_regex(array, "_(x[0-9A-Fa-f]{4}_)", "_x005F_\\1")
    array = pc.replace_substring(array, "&", "&amp;")
    array = pc.replace_substring(array, "<", "&lt;")
    array = pc.replace_substring(array, ">", "&gt;")
    array = pc.replace_substring(array, "\r", "&#13;")
    if pc.any(pc.match_substring_regex(array, _XML_ILLEGAL)).as_py():
        for code in [*range(0, 9), 11, 12, *range(14, 32)]:
            array = pc.replace_substring(array, chr(code), f"_x{code:04X}_")
    return array


def _max_length(array: pa.Array) -> int:
    longest = pc.max(pc.utf8_length(array)).as_py()
    return int(longest or 0)


class _Sheet:
    """One worksheet being written: its rows XML in a temp file, its width estimates."""

    def __init__(self, number: int, widths: list[int]) -> None:
        self.number = number
        self.name = SHEET_NAME if number == 1 else f"{SHEET_NAME} ({number})"
        self.rows = 0
        self.widths = list(widths)
        self.file: IO[bytes] = tempfile.TemporaryFile(prefix="xlsx-sheet-")  # noqa: SIM115


class XlsxSink:
    def __init__(
        self,
        out: BinaryIO,
        columns: Sequence[Column],
        options: WriteOptions,
        *,
        max_sheet_rows: int = MAX_SHEET_ROWS,
        compresslevel: int = 1,
    ) -> None:
        self._columns = list(columns)
        self._options = options
        self._out = out
        # A seekable spool lets zipfile put sizes in the local headers (no data descriptors):
        # the most conservative ZIP for Excel. Copying the finished, compressed file is cheap.
        self._spool: IO[bytes] = tempfile.TemporaryFile(prefix="xlsx-")  # noqa: SIM115
        self._zip = zipfile.ZipFile(
            self._spool, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=compresslevel
        )
        self._letters = [column_letter(i) for i in range(len(columns))]
        self._headers = header_names(columns, options, default="labels")
        self._scales = sorted({c.scale for c in columns if c.type == "decimal"})
        self._top_rows = 2 if options.title else 1
        self._rows_per_sheet = max_sheet_rows - self._top_rows
        self._base_widths = [len(h) + 2 for h in self._headers]
        self._sheets: list[_Sheet] = []
        self._sheet = self._new_sheet()
        self.truncated_cells = 0

    # -- rows ---------------------------------------------------------------------------------

    def write(self, batch: pa.RecordBatch) -> None:
        start = 0
        while start < batch.num_rows:
            room = self._rows_per_sheet - self._sheet.rows
            if room == 0:
                self._finish_sheet(self._sheet)
                self._sheet = self._new_sheet()
                continue
            part = batch.slice(start, min(room, batch.num_rows - start, _SLICE_ROWS))
            self._write_rows(part)
            start += part.num_rows

    def _write_rows(self, batch: pa.RecordBatch) -> None:
        sheet = self._sheet
        first = self._top_rows + sheet.rows + 1
        numbers = pc.cast(pa.array(np.arange(first, first + batch.num_rows)), pa.string())
        parts: list[Any] = ['<row r="', numbers, '">']
        for i, (column, array) in enumerate(zip(self._columns, batch.columns, strict=True)):
            cell, value, width = self._cell_parts(i, column, array)
            joined = pc.binary_join_element_wise(
                cell[0], self._letters[i], numbers, cell[1], value, cell[2], ""
            )
            parts.append(pc.fill_null(joined, ""))
            sheet.widths[i] = max(sheet.widths[i], min(width + 2, MAX_WIDTH))
        parts.append("</row>")
        rows = pc.binary_join_element_wise(*parts, "")
        joined = pc.binary_join(
            pa.ListArray.from_arrays(pa.array([0, len(rows)], pa.int32()), rows), ""
        )
        sheet.file.write(joined[0].as_buffer())
        sheet.rows += batch.num_rows

    def _cell_parts(
        self, i: int, column: Column, array: pa.Array
    ) -> tuple[tuple[Any, Any, Any], pa.Array, int]:
        """(``<c r="`` .. ``">`` .. ``</c>`` pieces, each a string or one per row; the value
        text; its widest length)."""
        kind = column.type
        if kind in ("string", "json"):
            text = self._cut_long(array)
            width = _max_length(text)
            escaped = xml_text(text)
            padded = pc.match_substring_regex(text, "^\\s|\\s$")
            value = pc.if_else(
                padded,
                pc.binary_join_element_wise('<t xml:space="preserve">', escaped, ""),
                pc.binary_join_element_wise("<t>", escaped, ""),
            )
            return ('<c r="', '" t="inlineStr"><is>', "</t></is></c>"), value, width
        if kind == "bool":
            text = pc.if_else(array, pa.scalar("1"), pa.scalar("0"))
            return ('<c r="', '" t="b"><v>', "</v></c>"), text, _FIXED_WIDTHS["bool"]
        if kind == "timestamp":
            micros = pc.cast(pc.cast(array, pa.timestamp("us")), pa.int64())
            exact = pc.cast(micros, pa.float64(), safe=False)  # inexact only far past 9999 AD
            days = pc.add(pc.divide(exact, _US_PER_DAY), 25_569.0)
            head = f'" s="{_STYLE_DATETIME}"><v>'
            low, end = (d * _US_PER_DAY for d in _EXCEL_DAYS)
            return _dates_or_text(micros, low, end, head, pc.cast(days, pa.string()), array)
        if kind == "date":
            days_i = pc.cast(array, pa.int32())
            head = f'" s="{_STYLE_DATE}"><v>'
            serial = pc.cast(pc.add(days_i, _EXCEL_EPOCH_DAYS), pa.string())
            return _dates_or_text(days_i, *_EXCEL_DAYS, head, serial, array)
        if kind == "float":
            finite = pc.is_finite(array)
            text = pc.if_else(finite, pc.cast(array, pa.string()), pa.scalar(None, pa.string()))
            return ('<c r="', '"><v>', "</v></c>"), text, min(_max_length(text), 15)
        text = pc.cast(array, pa.string())
        head = '"><v>'
        if kind == "decimal":
            style = _FIRST_DECIMAL_STYLE + self._scales.index(column.scale)
            head = f'" s="{style}"><v>'
        return ('<c r="', head, "</v></c>"), text, _max_length(text)

    def _cut_long(self, text: pa.Array) -> pa.Array:
        too_long = pc.greater(pc.utf8_length(text), MAX_CELL_CHARS)
        count = int(pc.sum(too_long).as_py() or 0)
        if not count:
            return text
        self.truncated_cells += count
        keep = MAX_CELL_CHARS - len(TRUNCATION_MARKER)
        cut = pc.binary_join_element_wise(
            pc.utf8_slice_codeunits(text, 0, keep), pa.scalar(TRUNCATION_MARKER), ""
        )
        return pc.if_else(too_long, cut, text)

    # -- sheets and package -------------------------------------------------------------------

    def _new_sheet(self) -> _Sheet:
        sheet = _Sheet(len(self._sheets) + 1, self._base_widths)
        self._sheets.append(sheet)
        return sheet

    def _top_xml(self) -> str:
        xml = ""
        row = 1
        if self._options.title:
            xml += (
                f'<row r="1"><c r="A1" s="{_STYLE_TITLE}" t="inlineStr"><is>'
                f'<t xml:space="preserve">{escape(self._options.title)}</t></is></c></row>'
            )
            row = 2
        cells = "".join(
            f'<c r="{letter}{row}" s="{_STYLE_HEADER}" t="inlineStr"><is>'
            f'<t xml:space="preserve">{escape(header)}</t></is></c>'
            for letter, header in zip(self._letters, self._headers, strict=True)
        )
        return xml + f'<row r="{row}">{cells}</row>'

    def _finish_sheet(self, sheet: _Sheet) -> None:
        top = self._top_rows
        cols = "".join(
            f'<col min="{i}" max="{i}" width="{w + 1}" customWidth="1"/>'
            for i, w in enumerate(sheet.widths, start=1)
        )
        # The used range up front, as Excel writes it: a reader sizes the sheet from it
        # (openpyxl's read-only mode otherwise parses every row once just to find the size).
        last = f"{self._letters[-1] if self._letters else 'A'}{top + sheet.rows}"
        head = (
            f"{_DECL}<worksheet {_NS} {_NS_R}>"
            f'<dimension ref="A1:{last}"/>'
            '<sheetViews><sheetView workbookViewId="0"'
            + (' tabSelected="1"' if sheet.number == 1 else "")
            + f'><pane ySplit="{top}" topLeftCell="A{top + 1}" activePane="bottomLeft"'
            ' state="frozen"/><selection pane="bottomLeft"/></sheetView></sheetViews>'
            f'<sheetFormatPr defaultRowHeight="15"/><cols>{cols}</cols><sheetData>'
            + self._top_xml()
        )
        size = sheet.file.tell()
        info = zipfile.ZipInfo(f"xl/worksheets/sheet{sheet.number}.xml", (1980, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED
        with self._zip.open(info, "w", force_zip64=size > (1 << 31)) as entry:
            entry.write(head.encode())
            sheet.file.seek(0)
            shutil.copyfileobj(sheet.file, entry, 1 << 20)
            entry.write(b"</sheetData></worksheet>")
        sheet.file.close()

    def _put(self, name: str, text: str) -> None:
        info = zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED
        self._zip.writestr(info, _DECL + text)

    def abandon(self) -> None:
        """Drop the sheets' temp files and the spooled ZIP (nothing reaches ``out``)."""
        for sheet in self._sheets:
            sheet.file.close()
        self._zip.close()
        self._spool.close()

    def close(self) -> dict[str, Any]:
        self._finish_sheet(self._sheet)
        n = len(self._sheets)
        sheets = "".join(
            f'<Override PartName="/xl/worksheets/sheet{i}.xml" ContentType="application/'
            'vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
            for i in range(1, n + 1)
        )
        self._put(
            "[Content_Types].xml",
            '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Default Extension="rels" ContentType="application/'
            'vnd.openxmlformats-package.relationships+xml"/>'
            '<Default Extension="xml" ContentType="application/xml"/>'
            '<Override PartName="/xl/workbook.xml" ContentType="application/'
            'vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
            '<Override PartName="/xl/styles.xml" ContentType="application/'
            'vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/>'
            f"{sheets}</Types>",
        )
        self._put(
            "_rels/.rels",
            '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/'
            '2006/relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>',
        )
        entries = "".join(
            f'<sheet name={quoteattr(s.name)} sheetId="{s.number}" r:id="rId{s.number}"/>'
            for s in self._sheets
        )
        self._put(
            "xl/workbook.xml",
            f'<workbook {_NS} {_NS_R}><bookViews><workbookView activeTab="0"/></bookViews>'
            f"<sheets>{entries}</sheets></workbook>",
        )
        rels = "".join(
            f'<Relationship Id="rId{i}" Type="http://schemas.openxmlformats.org/officeDocument/'
            f'2006/relationships/worksheet" Target="worksheets/sheet{i}.xml"/>'
            for i in range(1, n + 1)
        )
        self._put(
            "xl/_rels/workbook.xml.rels",
            '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            f'{rels}<Relationship Id="rId{n + 1}" Type="http://schemas.openxmlformats.org/'
            'officeDocument/2006/relationships/styles" Target="styles.xml"/></Relationships>',
        )
        self._put("xl/styles.xml", _styles(self._scales))
        self._zip.close()
        self._spool.seek(0)
        shutil.copyfileobj(self._spool, self._out, 1 << 20)
        self._spool.close()
        return {"sheets": n, "truncated_cells": self.truncated_cells}


def _styles(scales: list[int]) -> str:
    formats = ["yyyy-mm-dd hh:mm:ss", "yyyy-mm-dd"]
    formats += ["0." + "0" * s if s else "0" for s in scales]
    num_fmts = "".join(
        f'<numFmt numFmtId="{164 + i}" formatCode={quoteattr(code)}/>'
        for i, code in enumerate(formats)
    )
    font = '<sz val="11"/><name val="Calibri"/><family val="2"/>'
    plain = '<xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/>'
    xfs = [
        plain,
        '<xf numFmtId="0" fontId="1" fillId="2" borderId="0" xfId="0" applyFont="1"'
        ' applyFill="1"/>',
        '<xf numFmtId="164" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>',
        '<xf numFmtId="165" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>',
        '<xf numFmtId="0" fontId="2" fillId="0" borderId="0" xfId="0" applyFont="1"/>',
    ]
    xfs += [
        f'<xf numFmtId="{166 + i}" fontId="0" fillId="0" borderId="0" xfId="0"'
        ' applyNumberFormat="1"/>'
        for i in range(len(scales))
    ]
    return (
        f"<styleSheet {_NS}>"
        f'<numFmts count="{len(formats)}">{num_fmts}</numFmts>'
        f'<fonts count="3"><font>{font}</font><font><b/>{font}</font>'
        '<font><b/><sz val="14"/><name val="Calibri"/><family val="2"/></font></fonts>'
        '<fills count="3"><fill><patternFill patternType="none"/></fill>'
        '<fill><patternFill patternType="gray125"/></fill>'
        '<fill><patternFill patternType="solid"><fgColor rgb="FFD9E1F2"/>'
        '<bgColor indexed="64"/></patternFill></fill></fills>'
        '<borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders>'
        '<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/>'
        f'</cellStyleXfs><cellXfs count="{len(xfs)}">{"".join(xfs)}</cellXfs>'
        '<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles>'
        "</styleSheet>"
    )


def open_sink(out: BinaryIO, columns: Sequence[Column], options: WriteOptions) -> XlsxSink:
    """The xlsx writer (registry row ``core.formats.FORMATS["xlsx"]``)."""
    return XlsxSink(out, columns, options)
