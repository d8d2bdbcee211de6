"""File formats, one module each, behind ``exporters.base.Format``; packaging lives beside them.

``FORMATS`` is the registry the request validation and the pipeline look formats up in.
"""

from __future__ import annotations

from exporters.base import Format, Sink, WriteOptions
from exporters.csv import CsvFormat
from exporters.json import JsonFormat
from exporters.jsonl import JsonlFormat
from exporters.parquet import ParquetFormat
from exporters.pdf import PdfFormat
from exporters.xlsx import XlsxFormat

_ALL: tuple[Format, ...] = (
    CsvFormat(),
    JsonFormat(),
    JsonlFormat(),
    ParquetFormat(),
    XlsxFormat(),
    PdfFormat(),
)
FORMATS: dict[str, Format] = {f.name: f for f in _ALL}

__all__ = ["FORMATS", "Format", "Sink", "WriteOptions"]
