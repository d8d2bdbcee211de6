"""Format sinks fed Arrow batches directly: formula injection, XLSX limits, escaping, and the
file opening in LibreOffice."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import subprocess
import zipfile
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import openpyxl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from core.formats import FORMATS
from core.types import Column
from exporters import WriteOptions, open_sink
from exporters.base import HashingFile, formula_mask, iso_timestamps
from exporters.xlsx import MAX_CELL_CHARS, MAX_SHEET_ROWS, TRUNCATION_MARKER, XlsxSink

INJECTION = [
    "=1+1",
    "@SUM(A1)",
    "+cmd|' /C calc'!A0",
    "-2+3",
    '=HYPERLINK("http://x","y")',
    "\t=1+1",
    "\rtext",
    "\x00null-led",
    "plain",
]


def _col(name: str, kind: str, label: str | None = None) -> Column:
    return Column(name, label or name.title(), kind, sa.literal(0))  # type: ignore[arg-type]


def _write(fmt: str, columns: list[Column], batches: list[pa.RecordBatch], **options) -> bytes:
    out = io.BytesIO()
    sink = open_sink(FORMATS[fmt], HashingFile(out), columns, WriteOptions(**options))  # type: ignore[arg-type]
    for batch in batches:
        sink.write(batch)
    sink.close()
    return out.getvalue()


def _injection_batch() -> tuple[list[Column], pa.RecordBatch]:
    columns = [_col("text", "string"), _col("amount", "int")]
    batch = pa.RecordBatch.from_arrays(
        [pa.array(INJECTION), pa.array([-2] * len(INJECTION), pa.int64())], names=["text", "amount"]
    )
    return columns, batch


def _neutralised(value: str) -> str:
    return "'" + value if value[:1] in "=+-@\t\r\x00" else value


def test_csv_neutralises_formula_text_but_not_numbers() -> None:
    columns, batch = _injection_batch()
    data = _write("csv", columns, [batch])
    rows = list(csv.reader(io.StringIO(data.decode(), newline="")))[1:]
    assert [r[0] for r in rows] == [_neutralised(v) for v in INJECTION]
    assert {r[1] for r in rows} == {"-2"}


def test_csv_formula_neutralisation_can_be_turned_off() -> None:
    columns, batch = _injection_batch()
    data = _write("csv", columns, [batch], neutralize_formulas=False)
    rows = list(csv.reader(io.StringIO(data.decode(), newline="")))[1:]
    assert [r[0] for r in rows] == INJECTION


@pytest.mark.parametrize("neutralize", [True, False])
def test_xlsx_text_is_written_as_is_in_string_cells_never_formulas(neutralize: bool) -> None:
    columns, batch = _injection_batch()
    data = _write("xlsx", columns, [batch], neutralize_formulas=neutralize)

    ws = openpyxl.load_workbook(io.BytesIO(data))["Export"]
    cells = [row[0] for row in ws.iter_rows(min_row=2)]
    # A string cell is never evaluated, so no apostrophe: "-2+3" shows as "-2+3", not "'-2+3".
    # XML cannot carry NUL: it is written as Excel's escape _x0000_, shown as-is by openpyxl.
    assert [c.value.replace("_x0000_", "\x00") for c in cells] == INJECTION
    assert all(c.data_type == "s" for c in cells)
    assert [row[1].value for row in ws.iter_rows(min_row=2)] == [-2] * len(INJECTION)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        sheet = archive.read("xl/worksheets/sheet1.xml")
    assert b"<f>" not in sheet and b"<f " not in sheet
    assert sheet.count(b't="inlineStr"') == len(INJECTION) + 2  # + the two header cells


def test_xlsx_cuts_overlong_text_with_a_marker_and_counts_it() -> None:
    columns = [_col("text", "string")]
    long = "x" * (MAX_CELL_CHARS + 10)
    batch = pa.RecordBatch.from_arrays([pa.array([long, "short", long])], names=["text"])
    out = io.BytesIO()
    sink = XlsxSink(out, columns, WriteOptions())
    sink.write(batch)
    facts = sink.close()

    assert facts["truncated_cells"] == 2
    ws = openpyxl.load_workbook(out)["Export"]
    values = [r[0] for r in ws.iter_rows(min_row=2, values_only=True)]
    assert values[1] == "short"
    assert len(values[0]) == MAX_CELL_CHARS and values[0].endswith(TRUNCATION_MARKER)


def test_xlsx_escapes_markup_and_keeps_unicode_and_newlines() -> None:
    texts = ["a & b < c > d", "Zürich café ☕ 東京", "multi\nline", "_x0041_ literal", None, ""]
    columns = [_col("text", "string")]
    data = _write("xlsx", columns, [pa.RecordBatch.from_arrays([pa.array(texts)], ["text"])])
    ws = openpyxl.load_workbook(io.BytesIO(data))["Export"]
    values = [r[0] for r in ws.iter_rows(min_row=2, max_row=5, values_only=True)]
    assert values[:3] == texts[:3]
    assert values[3] in ("_x0041_ literal", "_x005F_x0041_ literal")


def _typed_batch() -> tuple[list[Column], pa.RecordBatch]:
    columns = [
        _col("code", "string"),
        Column("value", "Value", "decimal", sa.literal(0), 14, 2),
        _col("n", "int"),
        _col("ok", "bool"),
        _col("at", "timestamp"),
        _col("day", "date"),
        _col("ratio", "float"),
    ]
    batch = pa.RecordBatch.from_arrays(
        [
            pa.array(["A1", None]),
            pa.array([Decimal("12.50"), None], pa.decimal128(14, 2)),
            pa.array([7, None], pa.int64()),
            pa.array([True, None]),
            pa.array(
                [datetime(2026, 1, 31, 23, 59, 59, tzinfo=UTC), None], pa.timestamp("us", "UTC")
            ),
            pa.array([date(2026, 2, 1), None], pa.date32()),
            pa.array([0.25, float("nan")]),
        ],
        names=[c.name for c in columns],
    )
    return columns, batch


def test_xlsx_nulls_are_empty_cells_and_types_hold() -> None:
    columns, batch = _typed_batch()
    data = _write("xlsx", columns, [batch])
    ws = openpyxl.load_workbook(io.BytesIO(data))["Export"]
    first, second = ws.iter_rows(min_row=2, max_row=3, values_only=True)
    assert first == (
        "A1",
        12.5,
        7,
        True,
        datetime(2026, 1, 31, 23, 59, 59),
        datetime(2026, 2, 1),
        0.25,
    )
    assert second == (None,) * 7
    assert ws["B2"].number_format == "0.00"
    assert ws["F2"].is_date


@pytest.mark.skipif(shutil.which("soffice") is None, reason="LibreOffice is not installed")
def test_libreoffice_opens_the_xlsx_without_repair(tmp_path: Path) -> None:
    columns, batch = _typed_batch()
    source = tmp_path / "export.xlsx"
    source.write_bytes(_write("xlsx", columns, [batch], title="Title"))
    as_shown = "csv:Text - txt - csv (StarCalc):44,34,76,1,,0,false,true,true"
    run = subprocess.run(
        [
            "soffice",
            f"-env:UserInstallation=file://{tmp_path}/profile",
            "--headless",
            "--convert-to",
            as_shown,
            "--outdir",
            str(tmp_path),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert run.returncode == 0, run.stderr
    lines = (tmp_path / "export.csv").read_text().splitlines()
    assert lines == [
        "Title,,,,,,",
        "Code,Value,N,Ok,At,Day,Ratio",
        "A1,12.50,7,TRUE,2026-01-31 23:59:59,2026-02-01,0.25",
    ]


@pytest.mark.slow
def _xlsx_numbers(total: int, **sink: Any) -> tuple[io.BytesIO, dict[str, Any]]:
    """An XLSX of one int column ``N`` holding 0 .. total-1, written in chunks of 200,000."""
    out = io.BytesIO()
    xlsx = XlsxSink(out, [_col("n", "int")], WriteOptions(title=sink.pop("title", None)), **sink)
    for start in range(0, total, 200_000):
        numbers = np.arange(start, min(start + 200_000, total), dtype=np.int64)
        xlsx.write(pa.RecordBatch.from_arrays([pa.array(numbers)], names=["n"]))
    return out, xlsx.close()


def test_xlsx_rows_past_a_sheets_limit_continue_on_new_sheets_each_with_its_top_rows() -> None:
    out, facts = _xlsx_numbers(250, max_sheet_rows=100, title="Vouchers")

    assert facts["sheets"] == 3
    wb = openpyxl.load_workbook(out, read_only=True)
    assert wb.sheetnames == ["Export", "Export (2)", "Export (3)"]
    seen: list[int] = []
    for ws in wb.worksheets:
        rows = list(ws.iter_rows(values_only=True))
        assert rows[:2] == [("Vouchers",), ("N",)]  # the title and header on every sheet
        assert len(rows) <= 100
        assert ws.calculate_dimension() == f"A1:A{len(rows)}"  # the used range, up front
        seen += [value for (value,) in rows[2:]]
    assert seen == list(range(250))  # none lost, none repeated, in order


def test_xlsx_continues_on_a_new_sheet_past_1048576_rows() -> None:
    """Excel's own limit: the first sheet ends at row 1,048,576 exactly. openpyxl reads both
    sizes, the head of the first sheet and the whole second one; the first sheet's tail is
    read from its XML (openpyxl takes ~20 s to walk a million rows; the small-limit test
    above reads every row of every sheet through it)."""
    total = MAX_SHEET_ROWS + 1_500
    out, facts = _xlsx_numbers(total)

    assert facts["sheets"] == 2
    wb = openpyxl.load_workbook(out, read_only=True)
    assert wb.sheetnames == ["Export", "Export (2)"]
    assert [ws.max_row for ws in wb.worksheets] == [
        MAX_SHEET_ROWS,
        1 + total - (MAX_SHEET_ROWS - 1),
    ]
    assert list(wb["Export"].iter_rows(max_row=3, values_only=True)) == [("N",), (0,), (1,)]
    second = list(wb["Export (2)"].iter_rows(values_only=True))
    assert second[0] == ("N",)
    assert [v for (v,) in second[1:]] == list(range(MAX_SHEET_ROWS - 1, total))
    with zipfile.ZipFile(out) as package:
        sheet = package.read("xl/worksheets/sheet1.xml")
    numbers = re.findall(rb'<row r="(\d+)">', sheet)
    assert len(numbers) == MAX_SHEET_ROWS and int(numbers[-1]) == MAX_SHEET_ROWS
    last = sheet[sheet.rindex(b"<row ") :]
    assert f'<c r="A{MAX_SHEET_ROWS}"><v>{MAX_SHEET_ROWS - 2}</v></c>'.encode() in last


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_zero_rows_still_give_a_readable_file(fmt: str) -> None:
    columns, _ = _typed_batch()
    data = _write(fmt, columns, [])
    if fmt == "csv":
        assert data.decode() == "code,value,n,ok,at,day,ratio\n"
    elif fmt == "json":
        assert json.loads(data) == []
    elif fmt == "jsonl":
        assert data == b""
    elif fmt == "parquet":
        table = pq.read_table(io.BytesIO(data))
        assert table.num_rows == 0 and table.column_names == [c.name for c in columns]
    elif fmt == "xlsx":
        ws = openpyxl.load_workbook(io.BytesIO(data))["Export"]
        assert [c.value for c in ws[1]] == [c.label for c in columns] and ws.max_row == 1
    else:
        import pypdf

        text = pypdf.PdfReader(io.BytesIO(data)).pages[0].extract_text()
        assert "Code" in text and "Page 1" in text


def test_every_registered_format_has_a_writer_module() -> None:
    import importlib

    for spec in FORMATS.values():
        assert callable(importlib.import_module(spec.writer).open_sink), spec.name


FORMULA_PREFIX = r"^[=+\-@\t\r\x00]"
"""OWASP ASVS 5.0 1.2.10 as a regex: the reference ``formula_mask`` is checked against."""
_TEXT = st.text(alphabet=st.sampled_from(list("ab =+-@\t\r\x00é€😀'")), max_size=4)


@settings(max_examples=300, deadline=None)
@given(
    values=st.lists(st.none() | _TEXT, max_size=40),
    cut=st.tuples(st.integers(0, 40), st.integers(0, 40)),
    large=st.booleans(),
)
def test_formula_mask_reads_the_first_byte_as_the_regex_reads_the_first_character(
    values: list[str | None], cut: tuple[int, int], large: bool
) -> None:
    """Any text, nulls, empty values, sliced arrays (an offset into the buffers), both
    offset widths: the mask says what OWASP's formula regex (``FORMULA_PREFIX``, the check it
    replaced) says for every non-null value."""
    array = pa.array(values, pa.large_string() if large else pa.string())
    array = array.slice(min(cut[0], len(values)), cut[1])
    expected = [
        v is not None and re.match(FORMULA_PREFIX, v) is not None for v in array.to_pylist()
    ]
    got = formula_mask(array)
    nulls = [v is None for v in array.to_pylist()]
    assert [g and not n for g, n in zip(got.tolist(), nulls, strict=True)] == expected


_YEAR, _YEAR_1 = 31_556_952_000_000, -62_135_596_800_000_000  # us: a mean year, 0001-01-01


@settings(max_examples=200, deadline=None)
@given(
    micros=st.lists(
        st.none() | st.integers(_YEAR_1 - 4713 * _YEAR, _YEAR_1 + 30_000 * _YEAR),
        max_size=30,
    )
)
def test_iso_timestamps_are_strftime_to_the_character(micros: list[int | None]) -> None:
    """The cast-based text equals Arrow's strftime for any instant from PostgreSQL's first
    year (4713 BC) to 30000 AD, five-digit years and whole seconds (``.000000``) included.
    (Past ~32767 AD neither formats: strftime wraps to a wrong year, the cast says "value
    out of range" and ``core.pgtime`` writes those: ``test_pgtime``.)"""
    array = pa.array(micros, pa.timestamp("us", tz="UTC"))
    reference = pc.binary_join_element_wise(
        pc.strftime(array, format="%Y-%m-%dT%H:%M:%S"), pa.scalar("Z"), ""
    )
    assert iso_timestamps(array).to_pylist() == reference.to_pylist()


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(st.none() | st.text(max_size=6), max_size=30),
    cut=st.tuples(st.integers(0, 30), st.integers(0, 30)),
)
def test_json_text_round_trips_any_string(values: list[str | None], cut: tuple[int, int]) -> None:
    """Control characters, quotes, backslashes, any Unicode, in a sliced array (an offset into
    the buffers): each value's JSON text reads back as the value; a null is ``null``."""
    from exporters.json import json_values

    array = pa.array(values, pa.string()).slice(min(cut[0], len(values)), cut[1])
    column = _col("t", "string")
    texts = json_values(column, array).to_pylist()
    assert [json.loads(t) for t in texts] == array.to_pylist()


@pytest.mark.parametrize("fmt", [*FORMATS, "package"])
def test_an_abandoned_sink_writes_nothing_more_even_when_collected(
    fmt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failed export abandons its sink and closes its file: no format writes into the closed
    file afterwards (Parquet's footer did, printing "Exception ignored ... write to closed
    file"), and the temp files the sink held are closed."""
    import gc
    import sys

    from exporters.package import PackageInfo, PackageSink

    raised: list[BaseException | None] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: raised.append(u.exc_value))
    columns, batch = _injection_batch()
    out = io.BytesIO()
    if fmt == "package":
        info = PackageInfo("e", "voucher", "t", {}, "text", "vouchers", 100)
        sink: Any = PackageSink(HashingFile(out), FORMATS["xlsx"], columns, WriteOptions(), info)  # type: ignore[arg-type]
    else:
        sink = open_sink(FORMATS[fmt], HashingFile(out), columns, WriteOptions())  # type: ignore[arg-type]
    sink.write(batch)
    spool = getattr(sink, "_spool", None)  # XLSX's and the package's ZIP temp file
    sink.abandon()
    out.close()
    del sink
    gc.collect()
    assert raised == []
    assert spool is None or spool.closed


def test_parquet_dictionary_encodes_only_the_columns_whose_values_repeat() -> None:
    """A unique column (a code) is written plain, a repeating one (a type) as a dictionary,
    chosen from the first chunk; every value reads back the same, and an export without rows
    is still a Parquet file with its columns."""
    columns = [_col("code", "string"), _col("kind", "string"), _col("amount", "int")]
    rows = 1000
    batches = [
        pa.RecordBatch.from_pydict(
            {
                "code": [f"C{start + i:06d}" for i in range(rows)],
                "kind": [("gift", "discount", None)[i % 3] for i in range(rows)],
                "amount": list(range(start, start + rows)),
            }
        )
        for start in (0, rows)
    ]
    parquet = pq.ParquetFile(io.BytesIO(_write("parquet", columns, batches)))
    assert parquet.num_row_groups == 2
    for group in range(2):
        encodings = {
            name: parquet.metadata.row_group(group).column(i).encodings
            for i, name in enumerate(["code", "kind", "amount"])
        }
        assert "RLE_DICTIONARY" in encodings["kind"]
        assert "RLE_DICTIONARY" not in encodings["code"]
        assert "RLE_DICTIONARY" not in encodings["amount"]
    table = parquet.read()
    assert table.column("code").to_pylist() == [f"C{i:06d}" for i in range(2 * rows)]
    assert table.column("kind").to_pylist()[:4] == ["gift", "discount", None, "gift"]

    empty = pq.read_table(io.BytesIO(_write("parquet", columns, [])))
    assert empty.num_rows == 0 and empty.column_names == ["code", "kind", "amount"]
