"""The one small interface every file format implements, plus shared Arrow helpers.

A format module's ``open_sink`` opens a ``Sink`` on a binary file object; the pipeline
hands the sink typed Arrow record batches (one per chunk, columns named as in the export)
and closes it. A sink never holds more than the batch it is given (PDF, capped by
``max_rows``, is the exception: it lays out its bounded table at close). ``max_rows`` is
checked against the preliminary count before the first row is read.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from core import pgtime
from core.types import Column

FORMULA_FIRST_CHARS = "=+-@\t\r\x00"
"""OWASP ASVS 5.0 1.2.10: text starting with one of these a spreadsheet would run as a formula."""
_FORMULA_FIRST_BYTE = np.zeros(256, dtype=bool)
_FORMULA_FIRST_BYTE[[ord(c) for c in FORMULA_FIRST_CHARS]] = True


@dataclass(frozen=True)
class WriteOptions:
    """Presentation options shared by the formats that care about them."""

    header: str | None = None
    """``names`` (field names) or ``labels`` (human labels); ``None``: the format's default."""
    neutralize_formulas: bool = True
    title: str | None = None
    """XLSX title row and PDF title."""
    subject: str = "Export"
    """What the file holds (e.g. ``vouchers of acme``): the PDF title when ``title`` is unset."""
    max_rows: int | None = None
    """The format's row cap, if it has one (PDF lays out at most this many rows)."""
    opening: bool = True
    """Write what opens the file (CSV header, JSON ``[``); off for parts 1.. of a parallel one."""
    closing: bool = True
    """Write what closes the file (JSON ``]``); off for all but the last part."""


class Sink(Protocol):
    def write(self, batch: pa.RecordBatch) -> None:
        """Write one chunk (possibly empty); columns as given to ``Format.open``."""
        ...

    def close(self) -> dict[str, Any]:
        """Finish the file; return format-specific facts for the job result."""
        ...

    def abandon(self) -> None:
        """The export failed and its file is discarded: release what the sink holds (temp
        files, buffered rows) and write nothing more, not even when collected."""
        ...


def arrow_type(column: Column) -> pa.DataType:
    """The Arrow type a column is parsed into and written from."""
    return {
        "string": pa.string(),
        "json": pa.string(),
        "int": pa.int64(),
        "float": pa.float64(),
        "bool": pa.bool_(),
        "timestamp": pa.timestamp("us", tz="UTC"),
        "date": pa.date32(),
    }.get(column.type) or pa.decimal128(column.precision, column.scale)


class OpenSink(Protocol):
    """What each format module exports as ``open_sink``."""

    def __call__(self, out: BinaryIO, columns: Sequence[Column], options: WriteOptions) -> Sink: ...


def iso_timestamps(array: pa.Array) -> pa.Array:
    """timestamp[us, UTC] -> ``2026-01-31T23:59:59.123456Z`` strings (nulls stay null).

    The text is Arrow's cast of the same instants without their zone (``2026-01-31
    23:59:59.123456``, BC and five-digit years included) with the first space made a ``T``:
    the very characters ``strftime("%Y-%m-%dT%H:%M:%S")`` gives, which looks every value up
    in the time-zone database (~1.1 s per 1M values here, the cast ~0.2 s). The values Arrow
    cannot format (``infinity``, beyond ~32767 AD) are written by ``core.pgtime``.
    """
    assert isinstance(array.type, pa.TimestampType)
    naive = array.cast(pa.timestamp(array.type.unit))  # UTC wall time: the stored instant
    text = pc.replace_substring(naive.cast(pa.string()), " ", "T", max_replacements=1)
    iso = pc.binary_join_element_wise(text, pa.scalar("Z"), "")
    return _beyond_arrow(iso, text, array, pa.int64(), pgtime.format_timestamp)


TEMPORAL = ("timestamp", "date")
"""The column types PostgreSQL writes, and the text formats write, as ISO 8601 text."""


def iso_text(array: pa.Array) -> pa.Array:
    """A timestamp or date array as the ISO 8601 text every text format writes."""
    return iso_timestamps(array) if pa.types.is_timestamp(array.type) else iso_dates(array)


def iso_dates(array: pa.Array) -> pa.Array:
    """date32 -> ``2026-01-31`` strings (nulls stay null); ``infinity`` and the years Arrow
    cannot format are written by ``core.pgtime``."""
    text = array.cast(pa.string())
    return _beyond_arrow(text, text, array, pa.int32(), pgtime.format_date)


def _beyond_arrow(
    out: pa.Array, cast: pa.Array, array: pa.Array, storage: pa.DataType, format_one: Any
) -> pa.Array:
    """``out`` with the values whose Arrow ``cast`` is ``<value out of range: ...>`` (the
    infinities and the far years: rare) written one by one by ``format_one``."""
    odd = pc.fill_null(pc.starts_with(cast, "<"), False)
    if not pc.any(odd).as_py():
        return out
    values = array.cast(storage).filter(odd).to_pylist()
    return pc.replace_with_mask(out, odd, pa.array([format_one(v) for v in values], pa.string()))


_ARROW_READS = r"^\d{4}-.*\d$"
"""What Arrow's ISO 8601 parser reads of PostgreSQL's text: four-digit years, AD."""


def pg_temporal(text: pa.Array, column: Column) -> pa.Array:
    """A ``timestamp`` or ``date`` column from PostgreSQL's text of it (``DateStyle`` ISO).

    Arrow's cast reads every value from 0001 to 9999 AD (the whole chunk at once: the fast
    path). When a chunk holds one it cannot read -- ``infinity``, ``-infinity``, a BC or a
    five-digit year -- the rest is still cast and just those are parsed by ``core.pgtime``.
    """
    target = arrow_type(column)
    try:
        return text.cast(target)
    except pa.ArrowInvalid:
        pass
    odd = pc.invert(pc.fill_null(pc.match_substring_regex(text, _ARROW_READS), True))
    timestamp = column.type == "timestamp"
    storage = pa.int64() if timestamp else pa.int32()
    parse = pgtime.parse_timestamp if timestamp else pgtime.parse_date
    fixed = pa.array([parse(v, column.name) for v in text.filter(odd).to_pylist()], storage)
    try:
        read = pc.if_else(odd, pa.scalar(None, pa.string()), text).cast(target)
    except pa.ArrowInvalid as exc:
        raise pgtime.UnrepresentableValue(f"column {column.name}: {exc}") from exc
    return pc.replace_with_mask(read.cast(storage), odd, fixed).cast(target)


def neutralize_formulas(array: pa.Array) -> pa.Array:
    """Prefix ``'`` to text that a spreadsheet would treat as a formula."""
    mask = formula_mask(array)
    if not mask.any():
        return array
    return pc.if_else(mask, pc.binary_join_element_wise(pa.scalar("'"), array, ""), array)


def text_buffers(array: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """A ``string``/``large_string`` array's value offsets (one more than its values, from
    its own offset) and the bytes of its data buffer: numpy views of Arrow's buffers, no copy.
    Value ``i`` is ``data[offsets[i]:offsets[i + 1]]``."""
    if len(array) == 0:
        return np.zeros(1, dtype=np.int64), np.zeros(0, dtype=np.uint8)
    large = pa.types.is_large_string(array.type)
    _, offsets_buffer, data_buffer = array.buffers()
    offsets = np.frombuffer(
        offsets_buffer,
        dtype=np.int64 if large else np.int32,
        count=len(array) + 1,
        offset=(8 if large else 4) * array.offset,
    )
    if data_buffer is None:
        return offsets, np.zeros(0, dtype=np.uint8)
    return offsets, np.frombuffer(data_buffer, dtype=np.uint8)


def formula_mask(array: pa.Array) -> np.ndarray:
    """Where a text value starts with one of ``FORMULA_FIRST_CHARS``, read as the first byte
    of each value (~3 ms per 1M values; a regex ~25 ms). All those characters are ASCII, and
    in UTF-8 a character's first byte is ASCII only if the character is. A null's slot may
    hold any bytes: its result is null either way."""
    offsets, data = text_buffers(array)
    if data.size == 0:
        return np.zeros(len(array), dtype=bool)
    starts = offsets[:-1]
    mask: np.ndarray = _FORMULA_FIRST_BYTE[data.take(np.minimum(starts, data.size - 1))]
    mask &= offsets[1:] > starts  # an empty value starts with nothing
    return mask


def header_names(
    columns: Sequence[Column], options: WriteOptions, default: str = "names"
) -> list[str]:
    """The header row: field names or human labels, as asked or as the format prefers."""
    labels = (options.header or default) == "labels"
    return [c.label if labels else c.name for c in columns]


class HashingFile:
    """Counts and hashes the bytes that pass through to the file underneath."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self.sha256 = hashlib.sha256()
        self.bytes = 0
        self.closed = False

    def write(self, data: Any) -> int:
        self.sha256.update(data)
        n = self._out.write(data)
        self.bytes += len(memoryview(data).cast("B"))
        return n

    def flush(self) -> None:
        self._out.flush()

    def tell(self) -> int:
        return self.bytes

    def writable(self) -> bool:
        return True

    def close(self) -> None:
        self.closed = True
