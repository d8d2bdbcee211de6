"""JSON Lines: one JSON object per line, the same Arrow-vectorised encoder as ``json``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import BinaryIO

from exporters.base import WriteOptions
from exporters.json import JsonSink
from exportflow.request import Column


class JsonlFormat:
    name = "jsonl"
    extension = "jsonl"
    content_type = "application/jsonl"
    compressions: tuple[str, ...] = ("gzip", "zstd")
    max_rows: int | None = None

    def open(self, out: BinaryIO, columns: Sequence[Column], options: WriteOptions) -> JsonSink:
        return JsonSink(out, columns, lines=True)
