"""The PDF sink fed Arrow batches directly (no database): page numbers, whole values, wrapping,
CJK text and alignment, read back with pypdf."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pypdf
import pytest
import sqlalchemy as sa

from core.formats import FORMATS
from core.types import Column
from exporters import WriteOptions, open_sink
from exporters.base import HashingFile
from exporters.pdf import MAX_CELL_CHARS, TRUNCATION_MARKER, column_widths

AMOUNT = Decimal("123456789012345.67")
AT = datetime(2026, 1, 31, 23, 59, 59, tzinfo=UTC)


def _col(name: str, kind: str, label: str | None = None) -> Column:
    if kind == "decimal":
        return Column(name, label or name.title(), kind, sa.literal(0), 20, 2)  # type: ignore[arg-type]
    return Column(name, label or name.title(), kind, sa.literal(0))  # type: ignore[arg-type]


def _pdf(columns: list[Column], batches: list[pa.RecordBatch]) -> tuple[list[str], dict[str, Any]]:
    out = io.BytesIO()
    sink = open_sink(
        FORMATS["pdf"],
        HashingFile(out),
        columns,
        WriteOptions(subject="Vouchers of acme"),  # type: ignore[arg-type]
    )
    for batch in batches:
        sink.write(batch)
    facts = sink.close()
    reader = pypdf.PdfReader(io.BytesIO(out.getvalue()))
    return [page.extract_text() for page in reader.pages], facts


def _vouchers(n: int, notes: list[str] | None = None) -> tuple[list[Column], pa.RecordBatch]:
    columns = [
        _col("code", "string"),
        _col("amount", "decimal"),
        _col("created_at", "timestamp"),
        _col("note", "string"),
        _col("n", "int"),
    ]
    notes = (notes or []) + ["plain"] * (n - len(notes or []))
    batch = pa.RecordBatch.from_arrays(
        [
            pa.array([f"CODE-{i:05d}" for i in range(n)]),
            pa.array([AMOUNT] * n, pa.decimal128(20, 2)),
            pa.array([AT] * n, pa.timestamp("us", "UTC")),
            pa.array(notes),
            pa.array(range(n), pa.int64()),
        ],
        names=[c.name for c in columns],
    )
    return columns, batch


def test_every_page_says_page_n_of_the_total() -> None:
    columns, batch = _vouchers(300)
    pages, facts = _pdf(columns, [batch.slice(0, 120), batch.slice(120)])

    total = len(pages)
    assert total > 2 and facts["pages"] == total
    for number, text in enumerate(pages, start=1):
        assert f"Page {number} of {total}" in text
        assert "Vouchers of acme" in text and "Code" in text and "Amount" in text
    codes = set("\n".join(pages).split())
    assert all(f"CODE-{i:05d}" in codes for i in range(300))


def test_long_decimals_and_timestamps_appear_whole() -> None:
    columns, batch = _vouchers(3)
    pages, _ = _pdf(columns, [batch])

    words = pages[0].split()
    assert words.count("123456789012345.67") == 3
    assert pages[0].count("2026-01-31 23:59:59") == 3
    assert "…" not in pages[0] and "..." not in pages[0]


def test_japanese_chinese_and_korean_text_is_extractable() -> None:
    notes = ["東京", "Zürich café 東京タワー", "这是中文", "한국어 텍스트"]
    columns, batch = _vouchers(4, notes)
    pages, _ = _pdf(columns, [batch])

    text = pages[0]
    for note in notes:
        assert note in text


@pytest.mark.parametrize(
    "long",
    [
        " ".join(f"word{i:03d}" for i in range(60))[:300],
        "".join(chr(ord("a") + i % 26) for i in range(300)),  # one 300-letter "word"
        "東京" * 150,
    ],
    ids=["words", "one-long-word", "cjk"],
)
def test_long_text_wraps_onto_lines_and_is_kept_whole(long: str) -> None:
    assert len(long) == 300
    columns, batch = _vouchers(2, [long, "short"])
    pages, facts = _pdf(columns, [batch])

    text = pages[0]
    flat = re.sub(r"\s+", "", text)
    assert re.sub(r"\s+", "", long) in flat
    lines = [line for line in text.splitlines() if line.strip()]
    assert not any(re.sub(r"\s+", "", long) in re.sub(r"\s+", "", ln) for ln in lines)
    assert facts["truncated_cells"] == 0


def test_only_text_over_the_cell_limit_is_cut_with_a_marker_and_counted() -> None:
    huge = "y" * (MAX_CELL_CHARS + 50)
    columns, batch = _vouchers(2, [huge, "short"])
    pages, facts = _pdf(columns, [batch])

    flat = re.sub(r"\s+", "", "".join(pages))
    assert facts["truncated_cells"] == 1
    assert "y" * (MAX_CELL_CHARS - len(TRUNCATION_MARKER)) + "…[truncated]" in flat


def test_text_keeps_its_line_breaks() -> None:
    columns, batch = _vouchers(1, ["first line\r\nsecond line"])
    pages, _ = _pdf(columns, [batch])
    assert "first line\nsecond line" in pages[0]


def test_numbers_are_right_aligned() -> None:
    columns = [_col("n", "int"), _col("code", "string")]
    batch = pa.RecordBatch.from_arrays(
        [pa.array([7, 1234567], pa.int64()), pa.array(["a", "bbbbbbb"])], names=["n", "code"]
    )
    out = io.BytesIO()
    sink = open_sink(FORMATS["pdf"], HashingFile(out), columns, WriteOptions())  # type: ignore[arg-type]
    sink.write(batch)
    sink.close()
    starts: dict[str, float] = {}

    def visit(text: str, cm: list[float], tm: list[float], *_: object) -> None:
        if text.strip():
            starts.setdefault(text.strip(), cm[4] + tm[4])

    pypdf.PdfReader(out).pages[0].extract_text(visitor_text=visit)
    assert starts["7"] > starts["1234567"] + 10  # numbers end at the same right edge
    assert starts["a"] == pytest.approx(starts["bbbbbbb"])  # text starts at the left


def test_many_wide_columns_still_fit_the_page() -> None:
    columns = [_col(f"c{i}", "string") for i in range(12)] + [_col("at", "timestamp")]
    rows = [["lorem ipsum dolor sit amet " * 4] * 12 + ["2026-01-31 23:59:59"]] * 20
    widths = column_widths(columns, [c.label for c in columns], rows, 800)
    assert sum(widths) == pytest.approx(800)
    assert min(widths[:12]) >= 40


def test_short_columns_stay_narrow_and_the_table_is_not_stretched() -> None:
    columns = [_col("code", "string"), _col("n", "int")]
    rows = [["A1", "7"], ["B22", "12"]]
    widths = column_widths(columns, ["Code", "N"], rows, 800)
    assert sum(widths) < 150
