"""JSON (one array of objects, valid with zero rows) and JSON Lines, encoded by Arrow kernels.

Every value is turned into its JSON text column-wise in C++ (no per-row Python): strings are
escaped, numbers keep their database text (``12.50`` stays ``12.50``), timestamps are ISO 8601
strings, ``json`` fields (arrays, objects) are embedded as JSON, NULL is ``null``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.compute as pc

from core.types import Column
from exporters.base import TEMPORAL, WriteOptions, iso_text, text_buffers

_SIMPLE_ESCAPES = (("\\", "\\\\"), ('"', '\\"'), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t"))
_OTHER_CONTROL = [chr(c) for c in range(0x20) if chr(c) not in "\n\r\t"]


def json_strings(array: pa.Array) -> pa.Array:
    """Escape text as JSON string literals, quotes included."""
    for raw, escaped in _SIMPLE_ESCAPES:
        array = pc.replace_substring(array, raw, escaped)
    if _has_control_bytes(array):
        for char in _OTHER_CONTROL:
            array = pc.replace_substring(array, char, f"\\u{ord(char):04x}")
    return pc.binary_join_element_wise(pa.scalar('"'), array, pa.scalar('"'), "")


def _has_control_bytes(array: pa.Array) -> bool:
    """Whether any value holds a byte below 0x20 (the regex ``[\\x00-\\x1f]`` took ~25 ms
    per 1M values; this ~1 ms per MB). In UTF-8 such a byte is always the control character
    itself."""
    offsets, data = text_buffers(array)
    return bool((data[offsets[0] : offsets[-1]] < 0x20).any())


def json_values(column: Column, array: pa.Array) -> pa.Array:
    """The JSON text of each value of ``array`` (``null`` for NULL)."""
    if column.type == "string":
        text = json_strings(array)
    elif column.type == "json":
        text = array
    elif column.type in TEMPORAL:
        text = json_strings(iso_text(array))
    elif column.type == "bool":
        text = pc.if_else(array, pa.scalar("true"), pa.scalar("false"))
    elif column.type == "float":
        finite = pc.is_finite(array)
        text = pc.if_else(finite, pc.cast(array, pa.string()), pa.scalar(None, pa.string()))
    else:
        text = pc.cast(array, pa.string())
    return pc.fill_null(text, "null")


def encode_rows(
    columns: Sequence[Column], batch: pa.RecordBatch, prefix: str, suffix: str
) -> memoryview:
    """``prefix{"a":1,"b":"x"}suffix`` per row, concatenated: a view of the rows' own bytes in
    Arrow's data buffer (no row is null, and each row's text follows the previous one), so the
    chunk is not copied into one string and then into Python bytes."""
    parts: list[Any] = [pa.scalar(prefix + "{")]
    for i, (column, array) in enumerate(zip(columns, batch.columns, strict=True)):
        key = ("," if i else "") + json.dumps(column.name, ensure_ascii=False) + ":"
        parts += [pa.scalar(key), json_values(column, array)]
    parts.append(pa.scalar("}" + suffix))
    if not columns:
        return memoryview(((prefix + "{}" + suffix) * int(batch.num_rows)).encode())
    rows = pc.binary_join_element_wise(*parts, "")
    assert rows.null_count == 0
    offsets, data = text_buffers(rows)
    return data[offsets[0] : offsets[-1]].data


class JsonSink:
    """A JSON array (``[`` rows separated by ``,\\n`` ``]``) or JSON Lines (one per line)."""

    def __init__(
        self,
        out: BinaryIO,
        columns: Sequence[Column],
        lines: bool,
        options: WriteOptions | None = None,
    ) -> None:
        self._out = out
        self._columns = list(columns)
        self._lines = lines
        # a middle or last part of a parallel export continues an array already opened (and
        # holding rows: parts are never empty), so its first row starts with the comma
        self._opening = options is None or options.opening
        self._closing = options is None or options.closing
        self._first = self._opening
        if not lines and self._opening:
            out.write(b"[")

    def write(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows == 0:
            return
        if self._lines:
            self._out.write(encode_rows(self._columns, batch, "", "\n"))
            return
        data = encode_rows(self._columns, batch, ",\n", "")
        self._out.write(data[1:] if self._first else data)
        self._first = False

    def abandon(self) -> None:
        """Nothing is buffered: each chunk was written as it came."""

    def close(self) -> dict[str, Any]:
        if not self._lines and self._closing:
            self._out.write(b"]\n" if self._first else b"\n]\n")
        return {}


def open_sink(out: BinaryIO, columns: Sequence[Column], options: WriteOptions) -> JsonSink:
    """The json writer (registry row ``core.formats.FORMATS["json"]``)."""
    return JsonSink(out, columns, lines=False, options=options)
