"""File formats, one module each, behind ``exporters.base.Format``; packaging lives beside them.

``FORMATS`` is the registry the request validation and the pipeline look formats up in.
"""

from __future__ import annotations

from exporters.base import Format, Sink, WriteOptions
from exporters.csv import CsvFormat
from exporters.json import JsonFormat

_ALL: tuple[Format, ...] = (CsvFormat(), JsonFormat())
FORMATS: dict[str, Format] = {f.name: f for f in _ALL}

__all__ = ["FORMATS", "Format", "Sink", "WriteOptions"]
