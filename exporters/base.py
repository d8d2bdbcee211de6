"""The one small interface every file format implements, plus shared Arrow helpers.

A ``Format`` opens a ``Sink`` on a binary file object; the pipeline hands the sink typed
Arrow record batches (one per chunk, columns named as in the export) and closes it. A sink
never holds more than the batch it is given.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol

import pyarrow as pa
import pyarrow.compute as pc

from exportflow.request import Column

# OWASP ASVS 5.0 1.2.10: text that a spreadsheet would run as a formula.
FORMULA_PREFIX = r"^[=+\-@\t\r\x00]"


@dataclass(frozen=True)
class WriteOptions:
    """Presentation options shared by the formats that care about them."""

    header: str = "names"
    """``names`` (field names) or ``labels`` (human-readable labels)."""
    neutralize_formulas: bool = True
    title: str | None = None


class Sink(Protocol):
    def write(self, batch: pa.RecordBatch) -> None: ...

    def close(self) -> dict[str, Any]:
        """Finish the file; return format-specific facts for the job result."""
        ...


class Format(Protocol):
    name: str
    extension: str
    content_type: str
    compressions: tuple[str, ...]

    def open(self, out: BinaryIO, columns: Sequence[Column], options: WriteOptions) -> Sink: ...


def iso_timestamps(array: pa.Array) -> pa.Array:
    """timestamp[us, UTC] -> ``2026-01-31T23:59:59.123456Z`` strings (nulls stay null)."""
    text = pc.strftime(array, format="%Y-%m-%dT%H:%M:%S")
    return pc.binary_join_element_wise(text, pa.scalar("Z"), "")


def neutralize_formulas(array: pa.Array) -> pa.Array:
    """Prefix ``'`` to text that a spreadsheet would treat as a formula."""
    mask = pc.match_substring_regex(array, FORMULA_PREFIX)
    if not pc.any(mask).as_py():
        return array
    return pc.if_else(mask, pc.binary_join_element_wise(pa.scalar("'"), array, ""), array)


def header_names(columns: Sequence[Column], options: WriteOptions) -> list[str]:
    return [c.label if options.header == "labels" else c.name for c in columns]
