"""File writers, one module per format, each exporting ``open_sink(out, columns, options)``.

Which formats exist, and their extensions, content types, compressions and row caps, is the
registry ``core.formats.FORMATS``; a writer module is imported only when a file of its format
is written. ``compress`` (gzip/zstd) and ``package`` (ZIP by ``partition_by``) wrap writers.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import BinaryIO, cast

from core.formats import FormatSpec
from core.types import Column
from exporters.base import OpenSink, Sink, WriteOptions


def open_sink(
    spec: FormatSpec, out: BinaryIO, columns: Sequence[Column], options: WriteOptions
) -> Sink:
    """Open the writer of ``spec`` on ``out`` (its module imported on first use)."""
    writer = cast(OpenSink, importlib.import_module(spec.writer).open_sink)
    return writer(out, columns, options)


__all__ = ["Sink", "WriteOptions", "open_sink"]
