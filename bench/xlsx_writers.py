"""Benchmark: XLSX writers at constant memory, on the same typed Arrow batches.

Compares openpyxl ``write_only``, xlsxwriter ``constant_memory`` (both fed row by row, as
they must be) and exportflow's own ``exporters.xlsx`` (Arrow-built XML). Rows are voucher-
shaped: code, type (text), value (decimal), created_at (timestamp), active (bool).

    .venv/bin/python bench/xlsx_writers.py [rows]
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import numpy as np
import pyarrow as pa
import sqlalchemy as sa

from core.types import Column
from exporters.base import WriteOptions
from exporters.xlsx import XlsxSink

CHUNK = 50_000
COLUMNS = [
    Column("code", "Code", "string", sa.literal(0)),
    Column("voucher_type", "Voucher Type", "string", sa.literal(0)),
    Column("value", "Value", "decimal", sa.literal(0), 18, 2),
    Column("created_at", "Created At", "timestamp", sa.literal(0)),
    Column("active", "Active", "bool", sa.literal(0)),
]


def batches(rows: int) -> Iterator[pa.RecordBatch]:
    rng = np.random.default_rng(7)
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    for first in range(0, rows, CHUNK):
        n = min(CHUNK, rows - first)
        ids = np.arange(first, first + n)
        yield pa.RecordBatch.from_arrays(
            [
                pa.array([f"CODE-{i:08d}" for i in ids]),
                pa.array(rng.choice(["DISCOUNT_VOUCHER", "GIFT_VOUCHER"], n)),
                pa.array(
                    [Decimal(int(v)) / 100 for v in rng.integers(0, 100_000, n)],
                    pa.decimal128(18, 2),
                ),
                pa.array(
                    [start + dt.timedelta(seconds=int(s)) for s in ids],
                    pa.timestamp("us", tz="UTC"),
                ),
                pa.array(rng.random(n) > 0.5),
            ],
            names=[c.name for c in COLUMNS],
        )


def python_rows(batch: pa.RecordBatch) -> Iterator[tuple[object, ...]]:
    cols = [c.to_pylist() for c in batch.columns]
    cols[3] = [v.replace(tzinfo=None) for v in cols[3]]
    return zip(*cols, strict=True)


def openpyxl_write_only(data: list[pa.RecordBatch], path: Path) -> None:
    from openpyxl import Workbook

    wb = Workbook(write_only=True)
    ws = wb.create_sheet("Export")
    ws.append([c.label for c in COLUMNS])
    for batch in data:
        for row in python_rows(batch):
            ws.append(row)
    wb.save(path)


def xlsxwriter_constant_memory(data: list[pa.RecordBatch], path: Path) -> None:
    import xlsxwriter

    wb = xlsxwriter.Workbook(str(path), {"constant_memory": True, "strings_to_formulas": False})
    ws = wb.add_worksheet("Export")
    date_fmt = wb.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"})
    ws.write_row(0, 0, [c.label for c in COLUMNS])
    r = 1
    for batch in data:
        for row in python_rows(batch):
            ws.write_string(r, 0, row[0])  # type: ignore[arg-type,unused-ignore]
            ws.write_string(r, 1, row[1])  # type: ignore[arg-type,unused-ignore]
            ws.write_number(r, 2, float(row[2]))  # type: ignore[arg-type,unused-ignore]
            ws.write_datetime(r, 3, row[3], date_fmt)  # type: ignore[arg-type,unused-ignore]
            ws.write_boolean(r, 4, row[4])
            r += 1
    wb.close()


def exportflow_xlsx(data: list[pa.RecordBatch], path: Path) -> None:
    with path.open("wb") as out:
        sink = XlsxSink(out, COLUMNS, WriteOptions())
        for batch in data:
            sink.write(batch)
        sink.close()


WRITERS: dict[str, Callable[[list[pa.RecordBatch], Path], None]] = {
    "openpyxl write_only": openpyxl_write_only,
    "xlsxwriter constant_memory": xlsxwriter_constant_memory,
    "exportflow (Arrow XML)": exportflow_xlsx,
}


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    data = list(batches(rows))
    with tempfile.TemporaryDirectory() as tmp:
        for name, writer in WRITERS.items():
            path = Path(tmp) / f"{name.split()[0]}.xlsx"
            started = time.perf_counter()
            writer(data, path)
            took = time.perf_counter() - started
            size = os.path.getsize(path)
            print(
                f"{name:<28} {rows:>9,} rows {took:7.2f} s {rows / took:>10,.0f} rows/s"
                f" {size / 1e6:7.1f} MB"
            )


if __name__ == "__main__":
    main()
