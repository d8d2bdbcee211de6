"""The format registry: every output format in one table.

A row says what the API, the CLI help, the run form and error messages need to know about a
format (name, extension, content type, allowed compressions, row limit) and where its writer
lives. The writer module is imported only when a file is written (``exporters.open_sink``), so
the API process never loads a file writer. Adding a format is its writer module plus a row here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from core.errors import InvalidRequest

Compression = Literal["gzip", "zstd"]
COMPRESSIONS: dict[str, tuple[str, str]] = {
    "gzip": ("gz", "application/gzip"),
    "zstd": ("zst", "application/zstd"),
}
"""Compression -> (extension suffix, content type of the compressed file)."""


@dataclass(frozen=True)
class FormatSpec:
    name: str
    extension: str
    content_type: str
    writer: str
    """Module whose ``open_sink(out, columns, options)`` writes this format."""
    description: str
    compressions: tuple[str, ...] = ()
    max_rows_setting: str | None = None
    """Name of the setting that caps this format's rows (checked against the count)."""
    splittable: bool = False
    """Byte-concatenable output (parts of a parallel export can be joined as bytes)."""
    typed_metadata: bool = False
    """``metadata.<key>`` columns keep their JSON type (numbers, booleans); else text."""


FORMATS: dict[str, FormatSpec] = {
    spec.name: spec
    for spec in (
        FormatSpec(
            "csv",
            "csv",
            "text/csv; charset=utf-8",
            "exporters.csv",
            "RFC 4180 CSV, UTF-8, header row",
            ("gzip", "zstd"),
            splittable=True,
        ),
        FormatSpec(
            "json",
            "json",
            "application/json",
            "exporters.json",
            "one JSON array of objects",
            ("gzip", "zstd"),
            typed_metadata=True,
        ),
        FormatSpec(
            "jsonl",
            "jsonl",
            "application/jsonl",
            "exporters.jsonl",
            "one JSON object per line",
            ("gzip", "zstd"),
            splittable=True,
            typed_metadata=True,
        ),
        FormatSpec(
            "parquet",
            "parquet",
            "application/vnd.apache.parquet",
            "exporters.parquet",
            "typed columns, zstd pages, one row group per chunk",
            typed_metadata=True,
        ),
        FormatSpec(
            "xlsx",
            "xlsx",
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            "exporters.xlsx",
            "Excel workbook, typed cells, frozen header",
            typed_metadata=True,
        ),
        FormatSpec(
            "pdf",
            "pdf",
            "application/pdf",
            "exporters.pdf",
            "paginated table for small exports",
            max_rows_setting="pdf_max_rows",
        ),
    )
}


def get_format(name: object) -> FormatSpec:
    """The registry row for ``name`` (any case); ``InvalidRequest`` lists the choices."""
    spec = FORMATS.get(name.lower()) if isinstance(name, str) else None
    if spec is None:
        raise InvalidRequest(
            f"unknown format {name!r}; allowed: {', '.join(FORMATS)}",
            key="unknown_format",
            details={"allowed": list(FORMATS)},
        )
    return spec


def check_compression(spec: FormatSpec, compression: object) -> str | None:
    """The compression a request asked for, if ``spec`` allows it (``None``: none)."""
    if compression is None or compression == "":
        return None
    name = compression.lower() if isinstance(compression, str) else compression
    if name not in spec.compressions:
        raise InvalidRequest(
            f"compression {compression!r} is not available for {spec.name}; allowed: "
            + (", ".join(spec.compressions) or "none"),
            key="unknown_compression",
            details={"allowed": list(spec.compressions)},
        )
    return str(name)


def file_extension(spec: FormatSpec, compression: str | None, packaged: bool) -> tuple[str, str]:
    """(extension, content type) of the stored file: ``csv.gz`` for gzip'd CSV, ``zip`` packages."""
    if packaged:
        return "zip", "application/zip"
    if compression:
        suffix, content_type = COMPRESSIONS[compression]
        return f"{spec.extension}.{suffix}", content_type
    return spec.extension, spec.content_type
