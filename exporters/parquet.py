"""Parquet: typed columns straight from the extract's Arrow batches, one row group per chunk.

Types stay what the entity declares: ``decimal128(p, s)``, ``timestamp[us, tz=UTC]``, ``bool``,
``int64``, ``float64``, ``date32``; ``json`` fields are UTF-8 text. Written with zstd column
compression and Parquet 2.6 logical types, so pyarrow, pandas and DuckDB read it as typed.
Column names are the field names (``header`` does not apply: labels go into the field metadata).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, BinaryIO

import pyarrow as pa
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


class ParquetSink:
    def __init__(self, out: BinaryIO, columns: Sequence[Column]) -> None:
        self._schema = parquet_schema(columns)
        self._writer = pq.ParquetWriter(
            out, self._schema, compression="zstd", version="2.6", write_statistics=True
        )
        self._row_groups = 0

    def write(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows == 0:
            return
        typed = pa.RecordBatch.from_arrays(batch.columns, schema=self._schema)
        self._writer.write_batch(typed, row_group_size=batch.num_rows)
        self._row_groups += 1

    def close(self) -> dict[str, Any]:
        self._writer.close()
        return {"row_groups": self._row_groups}

    def abandon(self) -> None:
        """No footer is written (the writer would write one when collected, into a file
        already closed, and print the error)."""
        self._writer.is_open = False


def open_sink(out: BinaryIO, columns: Sequence[Column], options: WriteOptions) -> ParquetSink:
    """The parquet writer (registry row ``core.formats.FORMATS["parquet"]``)."""
    return ParquetSink(out, columns)
