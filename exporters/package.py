"""ZIP packages: one file per distinct value of ``partition_by``, plus ``manifest.json``.

The plan orders rows by the partition field first (then by the requested order), so each
value's rows arrive together: the package keeps exactly one entry open, streams it through the
inner format's sink, and closes it when the value changes. Memory stays one chunk whatever
the number of values; ``max_partitions`` (``EXPORTFLOW_MAX_PARTITIONS``) bounds the number of
files, because a ZIP keeps one central-directory record per file until it is closed.

``manifest.json`` (written last) holds the export id, entity, parameters, generated_at, and
per file its name, partition value, rows, bytes, sha256 and columns with types; then totals.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any, BinaryIO

import pyarrow as pa
import pyarrow.compute as pc

from core.errors import InvalidRequest
from core.formats import FormatSpec
from core.types import Column
from exporters import open_sink
from exporters.base import TEMPORAL, HashingFile, Sink, WriteOptions, iso_text

NULL_VALUE = "null"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass
class PackageInfo:
    """What the manifest says about the export as a whole."""

    export_id: str | None
    entity: str
    tenant: str
    parameters: dict[str, Any]
    partition_by: str
    stem: str
    """File names are ``{stem}-{value}.{extension}``."""
    max_files: int
    extra: dict[str, Any] = field(default_factory=dict)


def partition_keys(column: Column, array: pa.Array) -> pa.Array:
    """Each row's partition value as text (``null`` for NULL)."""
    if column.type in TEMPORAL:
        text = iso_text(array)
    elif column.type == "bool":
        text = pc.if_else(array, pa.scalar("true"), pa.scalar("false"))
    else:
        text = pc.cast(array, pa.string())
    return pc.fill_null(text, NULL_VALUE)


class _Entry:
    def __init__(
        self,
        zf: zipfile.ZipFile,
        name: str,
        value: str,
        fmt: FormatSpec,
        columns: Sequence[Column],
        options: WriteOptions,
    ) -> None:
        self.name = name
        self.value = value
        self.rows = 0
        info = zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED
        self._raw = zf.open(info, "w", force_zip64=True)
        self.file = HashingFile(self._raw)  # type: ignore[arg-type]
        self.sink: Sink = open_sink(fmt, self.file, columns, options)  # type: ignore[arg-type]

    def close(self) -> dict[str, Any]:
        extra = self.sink.close()
        self._raw.close()
        return extra

    def abandon(self) -> None:
        self.sink.abandon()
        self._raw.close()


class PackageSink:
    """Splits sorted batches by the partition column into one inner-format file each."""

    def __init__(
        self,
        out: BinaryIO,
        fmt: FormatSpec,
        columns: Sequence[Column],
        options: WriteOptions,
        info: PackageInfo,
    ) -> None:
        self._out = out
        # Spooled to a seekable temp file so each entry's sizes land in its local header
        # (archive tools that read ZIPs front to back dislike data descriptors).
        self._spool: IO[bytes] = tempfile.TemporaryFile(prefix="package-")  # noqa: SIM115
        self._zip = zipfile.ZipFile(
            self._spool, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1
        )
        self._fmt = fmt
        self._columns = list(columns)
        self._options = options
        self._info = info
        self._index = [c.name for c in columns].index(info.partition_by)
        self._entry: _Entry | None = None
        self._files: list[dict[str, Any]] = []
        self._names: set[str] = set()

    def write(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows == 0:
            return
        keys = partition_keys(self._columns[self._index], batch.column(self._index))
        changes = pc.indices_nonzero(pc.not_equal(keys[1:], keys[:-1])).to_pylist()
        starts = [0, *(i + 1 for i in changes)]
        ends = [*starts[1:], batch.num_rows]
        for start, end in zip(starts, ends, strict=True):
            value = str(keys[start].as_py())
            if self._entry is None or self._entry.value != value:
                self._open(value)
            assert self._entry is not None
            self._entry.sink.write(batch.slice(start, end - start))
            self._entry.rows += end - start

    def _open(self, value: str) -> None:
        self._close_entry()
        if len(self._files) >= self._info.max_files:
            raise InvalidRequest(
                f"partition_by {self._info.partition_by!r} gives more than "
                f"{self._info.max_files:,} files; choose a field with fewer distinct values",
                key="too_many_partitions",
            )
        base = f"{self._info.stem}-{_UNSAFE.sub('_', value)[:80] or '_'}"
        name = f"{base}.{self._fmt.extension}"
        n = 2
        while name in self._names or name == "manifest.json":
            name = f"{base}-{n}.{self._fmt.extension}"
            n += 1
        self._names.add(name)
        self._entry = _Entry(self._zip, name, value, self._fmt, self._columns, self._options)

    def _close_entry(self) -> None:
        entry = self._entry
        if entry is None:
            return
        extra = entry.close()
        self._files.append(
            {
                "name": entry.name,
                "partition_value": entry.value,
                "rows": entry.rows,
                "bytes": entry.file.bytes,
                "sha256": entry.file.sha256.hexdigest(),
                **({"details": extra} if extra else {}),
            }
        )
        self._entry = None

    def abandon(self) -> None:
        if self._entry is not None:
            self._entry.abandon()
            self._entry = None
        self._zip.close()
        self._spool.close()  # the half-written ZIP, never copied out

    def close(self) -> dict[str, Any]:
        self._close_entry()
        columns = [{"name": c.name, "label": c.label, "type": c.type} for c in self._columns]
        totals = {
            "files": len(self._files),
            "rows": sum(f["rows"] for f in self._files),
            "bytes": sum(f["bytes"] for f in self._files),
        }
        manifest = {
            "export_id": self._info.export_id,
            "entity": self._info.entity,
            "tenant": self._info.tenant,
            "parameters": self._info.parameters,
            "partition_by": self._info.partition_by,
            "format": self._fmt.name,
            "generated_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "files": [{**f, "columns": columns} for f in self._files],
            "totals": totals,
        }
        info = zipfile.ZipInfo("manifest.json", (1980, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED
        self._zip.writestr(info, json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
        self._zip.close()
        self._spool.seek(0)
        shutil.copyfileobj(self._spool, self._out, 1 << 20)
        self._spool.close()
        truncated = sum(f.get("details", {}).get("truncated_cells", 0) for f in self._files)
        result: dict[str, Any] = {"package": {"partition_by": self._info.partition_by, **totals}}
        if truncated:
            result["truncated_cells"] = truncated
        return result
