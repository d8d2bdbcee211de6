"""Write: stream one export from the database into a local file, chunk by chunk.

extract (COPY -> Arrow batch) -> validate (GX, per chunk) -> transform (the plan's columns:
``metadata`` expanded to one column per key, text prepared per format) -> format sink ->
compression -> sha256/byte counter -> temp file. Only one chunk is in memory at a time.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import sqlalchemy as sa

from exporters import FORMATS, WriteOptions
from exporters.compress import CONTENT_TYPES, EXTENSIONS, compressed
from exportflow.request import ExportPlan
from tasks.extract import open_extract
from tasks.validate import ChunkValidator, warm_up


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

    def writable(self) -> bool:
        return True

    def close(self) -> None:
        self.closed = True


@dataclass
class Produced:
    """A finished local export file and the facts recorded about it."""

    path: Path
    extension: str
    content_type: str
    bytes: int
    sha256: str
    row_count: int
    total: int
    columns: list[dict[str, str]]
    metadata_keys: list[str]
    extra: dict[str, Any] = field(default_factory=dict)


def extension_for(plan: ExportPlan) -> tuple[str, str]:
    """File extension and content type of a plan's output (``csv.gz`` for gzip'd CSV)."""
    fmt = FORMATS[plan.format]
    if plan.compression:
        return f"{fmt.extension}.{EXTENSIONS[plan.compression]}", CONTENT_TYPES[plan.compression]
    return fmt.extension, fmt.content_type


def write_file(
    engine: sa.Engine,
    plan: ExportPlan,
    path: Path,
    *,
    chunk_bytes: int,
    validate: bool = True,
    options: WriteOptions | None = None,
    on_total: Callable[[int], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
    statement_timeout_s: int = 0,
) -> Produced:
    """Stream ``plan`` into ``path``; ``on_progress`` gets the running row count per chunk."""
    fmt = FORMATS[plan.format]
    extension, content_type = extension_for(plan)
    rows = 0
    if validate and ChunkValidator(plan.entity, plan.columns()).expectations:
        warm_up()  # only when an expectation applies to a selected field
    with open_extract(engine, plan, chunk_bytes, statement_timeout_s) as extract:
        if on_total:
            on_total(extract.total)
        validator = ChunkValidator(plan.entity, extract.columns) if validate else None
        if validator is not None:
            validator.prepare()
        with path.open("wb") as raw:
            hashing = HashingFile(raw)
            stream = compressed(hashing, plan.compression)  # type: ignore[arg-type]
            sink = fmt.open(stream, extract.columns, options or WriteOptions())
            for batch in extract.batches:
                if validator is not None:
                    validator.validate(batch, rows)
                sink.write(batch)
                rows += batch.num_rows
                if on_progress:
                    on_progress(rows)
            extra = sink.close()
            stream.close()
    if validator is not None and validator.expectations:
        extra["validation"] = validator.report.as_dict()
    return Produced(
        path=path,
        extension=extension,
        content_type=content_type,
        bytes=hashing.bytes,
        sha256=hashing.sha256.hexdigest(),
        row_count=rows,
        total=extract.total,
        columns=[{"name": c.name, "label": c.label, "type": c.type} for c in extract.columns],
        metadata_keys=extract.metadata_keys,
        extra=extra,
    )


class Throttle:
    """Calls ``fn`` at most once per ``every`` seconds (and always on ``flush``)."""

    def __init__(self, fn: Callable[[int], None], every: float) -> None:
        self._fn = fn
        self._every = every
        self._last = 0.0
        self._value: int | None = None

    def __call__(self, value: int) -> None:
        self._value = value
        now = time.monotonic()
        if now - self._last >= self._every:
            self._last = now
            self._fn(value)

    def flush(self) -> None:
        if self._value is not None:
            self._fn(self._value)
