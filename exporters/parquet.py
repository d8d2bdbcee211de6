"""Parquet: typed columns straight from the extract's Arrow batches, one row group per chunk.

Types stay what the entity declares: ``decimal128(p, s)``, ``timestamp[us, tz=UTC]``, ``bool``,
``int64``, ``float64``, ``date32``; ``json`` fields are UTF-8 text. Written with zstd column
compression and Parquet 2.6 logical types, so pyarrow, pandas and DuckDB read it as typed.
Column names are the field names (``header`` does not apply: labels go into the field metadata).

Dictionary encoding only for the columns whose first chunk repeats its values
(``dictionary_columns``): on a unique column (a code, an id, an amount) Arrow builds a
dictionary for every row group and then falls back to plain encoding, work that also makes
the file larger. On the bench's 1M vouchers: 0.25 instead of 0.38-0.58 s of the writer's CPU,
9.2 instead of 11.8 MB.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from core.types import Column
from exporters.base import WriteOptions, arrow_type


def parquet_schema(columns: Sequence[Column]) -> pa.Schema:
    """The file's schema: each column's Arrow type, its label kept as field metadata."""
    return pa.schema(
        [
            pa.field(c.name, arrow_type(c), metadata={"label": c.label, "type": c.type})
            for c in columns
        ]
    )


REPEATS = 0.5
"""A column is dictionary-encoded when its first chunk has at most this many distinct values
per row."""


def dictionary_columns(batch: pa.RecordBatch, repeats: float = REPEATS) -> list[str]:
    """The columns of ``batch`` whose values repeat: distinct non-null values at most
    ``repeats`` x its rows (an all-NULL column counts as repeating)."""
    return [
        name
        for name, array in zip(batch.schema.names, batch.columns, strict=True)
        if pc.count_distinct(array).as_py() <= repeats * batch.num_rows
    ]


class ParquetSink:
    """Opens the file's writer at the first rows (which choose the dictionary columns), or
    at ``close`` for an export without rows (a file with the schema and no row group)."""

    def __init__(self, out: BinaryIO, columns: Sequence[Column]) -> None:
        self._out = out
        self._schema = parquet_schema(columns)
        self._writer: pq.ParquetWriter | None = None
        self._row_groups = 0

    def _open(self, dictionary: list[str]) -> pq.ParquetWriter:
        self._writer = pq.ParquetWriter(
            self._out,
            self._schema,
            compression="zstd",
            version="2.6",
            write_statistics=True,
            use_dictionary=dictionary,
        )
        return self._writer

    def write(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows == 0:
            return
        typed = pa.RecordBatch.from_arrays(batch.columns, schema=self._schema)
        writer = self._writer or self._open(dictionary_columns(typed))
        writer.write_batch(typed, row_group_size=batch.num_rows)
        self._row_groups += 1

    def close(self) -> dict[str, Any]:
        (self._writer or self._open([])).close()
        return {"row_groups": self._row_groups}

    def abandon(self) -> None:
        """No footer is written (the writer would write one when collected, into a file
        already closed, and print the error)."""
        if self._writer is not None:
            self._writer.is_open = False


def open_sink(out: BinaryIO, columns: Sequence[Column], options: WriteOptions) -> ParquetSink:
    """The parquet writer (registry row ``core.formats.FORMATS["parquet"]``)."""
    return ParquetSink(out, columns)
