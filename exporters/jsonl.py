"""JSON Lines: one JSON object per line, the same Arrow-vectorised encoder as ``json``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import BinaryIO

from core.types import Column
from exporters.base import WriteOptions
from exporters.json import JsonSink


def open_sink(out: BinaryIO, columns: Sequence[Column], options: WriteOptions) -> JsonSink:
    """The jsonl writer (registry row ``core.formats.FORMATS["jsonl"]``)."""
    return JsonSink(out, columns, lines=True)
