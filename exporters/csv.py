"""CSV (RFC 4180, UTF-8, header row) written by Arrow's C++ CSV writer.

Strings are always quoted, NULL is an empty unquoted field and the empty string is ``""``, so
the two stay distinguishable. Timestamps (in UTC) and dates are ISO 8601 text, and PostgreSQL's
``infinity`` / ``-infinity`` are written as it writes them. Text that a spreadsheet would run
as a formula is prefixed with ``'`` unless ``neutralize_formulas`` is off.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.csv as pacsv

from core.types import Column
from exporters.base import (
    TEMPORAL,
    WriteOptions,
    header_names,
    iso_text,
    neutralize_formulas,
)


class CsvSink:
    def __init__(self, out: BinaryIO, columns: Sequence[Column], options: WriteOptions) -> None:
        self._out = out
        self._columns = list(columns)
        self._options = options
        self._writer: pacsv.CSVWriter | None = None
        if options.opening:
            line = io.StringIO()
            csv.writer(line, lineterminator="\n").writerow(header_names(columns, options))
            out.write(line.getvalue().encode("utf-8"))

    def _text_ready(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        arrays = []
        for column, array in zip(self._columns, batch.columns, strict=True):
            if column.type in TEMPORAL:  # Arrow's own writer would print "<value out of
                array = iso_text(array)  # range>" for infinity (and quotes neither)
            elif column.type in ("string", "json") and self._options.neutralize_formulas:
                array = neutralize_formulas(array)
            arrays.append(array)
        return pa.RecordBatch.from_arrays(arrays, names=[c.name for c in self._columns])

    def write(self, batch: pa.RecordBatch) -> None:
        ready = self._text_ready(batch)
        if self._writer is None:
            self._writer = pacsv.CSVWriter(
                self._out, ready.schema, write_options=pacsv.WriteOptions(include_header=False)
            )
        self._writer.write_batch(ready)

    def close(self) -> dict[str, Any]:
        if self._writer is not None:
            self._writer.close()
        return {}

    def abandon(self) -> None:
        self._writer = None  # it writes nothing more on close or when collected


def open_sink(out: BinaryIO, columns: Sequence[Column], options: WriteOptions) -> CsvSink:
    """The csv writer (registry row ``core.formats.FORMATS["csv"]``)."""
    return CsvSink(out, columns, options)
