"""Write: stream one export from the database into a local file, chunk by chunk.

extract (COPY -> Arrow batch) -> validate (GX, per chunk) -> transform (the plan's columns:
``metadata`` expanded to one column per key, text prepared per format) -> format sink ->
compression -> sha256/byte counter -> temp file. Only one chunk is in memory at a time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import sqlalchemy as sa
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from core.errors import ExportError, InvalidRequest, StopAttempt, TimedOut, ValidationFailed
from core.formats import FormatSpec, file_extension, get_format
from core.settings import Settings, get_settings
from db import jobs
from db.engine import get_engine
from db.jobs import Job
from exporters import WriteOptions, open_sink
from exporters.base import HashingFile, Sink
from exporters.compress import compressed
from exporters.package import PackageInfo, PackageSink
from query.plan import ExportPlan
from tasks import headstart
from tasks.extract import Extract, Limits, PartRead, attempt_limits, open_extract
from tasks.report import ProgressArtifact
from tasks.validate import BehindTheWriter, ChunkValidator, warm_up


@dataclass
class Produced:
    """A finished local export file and the facts recorded about it."""

    path: Path
    extension: str
    content_type: str
    bytes: int
    sha256: str
    row_count: int
    total: int | None
    columns: list[dict[str, str]]
    metadata_keys: list[str]
    extra: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    """Wall time of reading, validating and writing the file."""
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds per stage: ``count`` (snapshot, count, metadata keys), ``stream`` (the rows)."""
    ahead_s: float | None = None
    """With a head start: how long before the stream it began opening the snapshot."""


def extension_for(plan: ExportPlan) -> tuple[str, str]:
    """File extension and content type of a plan's output (``csv.gz`` for gzip'd CSV)."""
    return file_extension(get_format(plan.format), plan.compression, bool(plan.partition_by))


def max_rows(spec: FormatSpec, settings: Settings) -> int | None:
    """The format's row cap under these settings (``None``: unlimited)."""
    return int(getattr(settings, spec.max_rows_setting)) if spec.max_rows_setting else None


def write_options(plan: ExportPlan, settings: Settings) -> WriteOptions:
    """The presentation options a plan asks for."""
    return WriteOptions(
        header=plan.header,
        neutralize_formulas=plan.neutralize_formulas,
        title=plan.title,
        subject=f"{plan.entity.plural.capitalize()} of {plan.tenant}",
        max_rows=max_rows(get_format(plan.format), settings),
    )


def check_row_cap(plan: ExportPlan, total: int, settings: Settings) -> None:
    """Reject, before any row is read, an export bigger than its format accepts."""
    limit = max_rows(get_format(plan.format), settings)
    if limit is not None and total > limit:
        raise InvalidRequest(
            f"{total:,} rows is more than a {plan.format.upper()} export can hold ({limit:,});"
            " narrow the filters, or export as xlsx or csv",
            key="too_many_rows",
            details={"total": total, "max_rows": limit, "format": plan.format},
        )


def write_file(
    engine: sa.Engine,
    plan: ExportPlan,
    path: Path,
    *,
    settings: Settings,
    options: WriteOptions | None = None,
    on_total: Callable[[int], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
    export_id: str | None = None,
    limits: Limits | None = None,
    part: PartRead | None = None,
    on_open: Callable[[Extract], None] | None = None,
    ahead: bool = False,
) -> Produced:
    """Stream ``plan`` into ``path``; ``on_progress`` gets the running row count per chunk
    (and may stop the stream by raising).

    ``options`` defaults to what the plan asks for; ``export_id`` goes into ZIP manifests;
    ``limits`` are the reads' time limits (default: the settings' statement/lock timeouts).
    With ``part`` this is one range of a parallel export, read in the coordinator's snapshot
    (``plan`` is already narrowed to the range; ``options`` say whether it opens/closes).
    ``ahead``: stream the snapshot this run's head start opened, if it fits (``tasks.headstart``).
    """
    validate = plan.validation
    fmt = get_format(plan.format)
    extension, content_type = extension_for(plan)
    options = options or write_options(plan, settings)
    rows = 0
    if validate and any(e.column in plan.fields for e in plan.entity.expectations):
        warm_up()  # only when an expectation applies to a selected field
    pause = settings.part_chunk_pause_s if part is not None else 0.0
    limits = limits or Limits(settings.statement_timeout_s, settings.lock_timeout_s)
    arrow_pool = pa.default_memory_pool()
    started = time.perf_counter()
    opened = headstart.take(engine, plan, limits) if ahead and part is None else None
    ahead_s = time.monotonic() - opened.began_at if opened is not None else None
    with open_extract(engine, plan, settings.chunk_bytes, limits, part, opened) as extract:
        counted = time.perf_counter()
        if on_open:
            on_open(extract)
        if extract.total is not None:
            if on_total:
                on_total(extract.total)
            check_row_cap(plan, extract.total, settings)
        validator = ChunkValidator(plan.entity, extract.columns) if validate else None
        checking: BehindTheWriter | None = None
        if validator is not None and validator.expectations:
            validator.prepare()
            checking = BehindTheWriter(validator, group_rows=settings.validate_rows)
        try:
            with path.open("wb") as raw:
                hashing = HashingFile(raw)
                stream = compressed(hashing, plan.compression)  # type: ignore[arg-type]
                sink: Sink
                if plan.partition_by:
                    info = PackageInfo(
                        export_id=export_id,
                        entity=plan.entity.name,
                        tenant=plan.tenant,
                        parameters=plan.parameters,
                        partition_by=plan.partition_by,
                        stem=plan.entity.plural,
                        max_files=settings.max_partitions,
                    )
                    sink = PackageSink(stream, fmt, extract.columns, options, info)
                else:
                    sink = open_sink(fmt, stream, extract.columns, options)
                first_row: float | None = None
                try:
                    for batch in extract.batches:
                        if first_row is None:
                            first_row = time.perf_counter()
                        if checking is not None:
                            checking.submit(batch, rows)
                        sink.write(batch)
                        # what this chunk's Arrow arrays and the writer's scratch arrays freed
                        # goes back to the OS (mimalloc keeps it otherwise: +40-65 MB of RSS at
                        # 1M rows)
                        arrow_pool.release_unused()
                        rows += batch.num_rows
                        if on_progress:
                            on_progress(rows)
                        if pause:
                            time.sleep(pause)
                    if checking is not None:
                        checking.finish()
                    extra = sink.close()
                except BaseException:
                    sink.abandon()  # the file is discarded
                    raise
                stream.close()
                streamed = time.perf_counter()
        except ExportError as exc:
            # A chunk written after a failing one (validation runs behind) may fail on its own
            # (a partition cap, a run timeout): the export still failed validation first.
            failure = checking.stop() if checking is not None else None
            if failure is not None and not isinstance(exc, ValidationFailed | StopAttempt):
                raise failure from exc
            raise
        finally:
            if checking is not None:
                checking.close()
            if validator is not None:
                validator.close()
    if validator is not None and validator.expectations:
        extra["validation"] = validator.report.as_dict()
        extra["quality"] = validator.report.quality(plan.entity.on_invalid)
    else:
        extra["quality"] = {
            "engine": "great_expectations",
            "success": None,
            "skipped": "validation was turned off for this export"
            if not validate
            else "no expectation of this entity applies to the selected fields",
            "expectations": [],
        }
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
        timings={
            "count": counted - started,
            # the part of the stream spent waiting for the first row (the server's sort)
            "first_row": (first_row or streamed) - counted,
            "stream": streamed - counted,
        },
        ahead_s=ahead_s,
    )


class Heartbeat:
    """The per-chunk hook of a running attempt: renews its lease with the rows written so far
    (fenced: ``StopAttempt`` once the attempt lost the job or it was cancelled) at the first
    chunk and then at most once per ``heartbeat_s``, enforces the run timeout at every chunk,
    and pauses if the settings ask for it. The stream stops within a chunk of the first renewal
    that finds the job no longer its own.

    Renewing at every chunk was a round trip to PostgreSQL per chunk, made on the writer's
    thread: 21 renewals held a 1M-row CSV export's writer 0.10-0.12 s (served runs, traced).
    The file is only ever published after a renewal of its own (``flows.pipeline``), so a
    superseded attempt still stores nothing."""

    def __init__(self, job: Job, deadline: float, settings: Settings) -> None:
        self.job = job
        self.deadline = deadline
        self.settings = settings
        self.engine = get_engine()
        self._renew = Throttle(self._renew_now, settings.heartbeat_s)

    def remaining_s(self) -> float:
        return self.deadline - time.monotonic()

    def _renew_now(self, rows: int) -> None:
        jobs.heartbeat(
            self.engine, self.job.id, self.job.attempt, progress=rows, lease_s=self.settings.lease_s
        )

    def __call__(self, rows: int) -> None:
        self._renew(rows)
        if self.remaining_s() <= 0:
            raise TimedOut(
                f"the export ran longer than the run timeout of {self.settings.run_timeout_s} s"
                " (EXPORTFLOW_RUN_TIMEOUT_S)",
                key="run_timeout",
            )
        if self.settings.chunk_pause_s:
            time.sleep(self.settings.chunk_pause_s)


class Throttle:
    """Calls ``fn`` at the first call and then at most once per ``every`` seconds (and always
    on ``flush``); ``every`` 0 = every call."""

    def __init__(self, fn: Callable[[int], None], every: float) -> None:
        self._fn = fn
        self._every = every
        self._last: float | None = None
        self._value: int | None = None

    def __call__(self, value: int) -> None:
        self._value = value
        now = time.monotonic()
        if self._last is None or now - self._last >= self._every:
            self._last = now
            self._fn(value)

    def flush(self) -> None:
        if self._value is not None:
            self._fn(self._value)


@task(name="write-export-file", cache_policy=NO_CACHE)
def write_export_file(job: Job, plan: ExportPlan, workdir: Path, deadline: float) -> Produced:
    """Stream the rows of ``plan`` into a temp file, recording total and progress on the job
    and renewing the attempt's lease at every chunk; ``deadline`` (monotonic) is the end of
    the run timeout."""
    logger = get_run_logger()
    settings = get_settings()
    engine = get_engine()
    beat = Heartbeat(job, deadline, settings)

    artifact = ProgressArtifact(job)
    started = time.monotonic()

    def total(n: int) -> None:
        jobs.record_total(engine, job.id, job.attempt, n)
        artifact.start(n)
        logger.info("%s export %s: %s rows to write", plan.entity.name, job.id, n)

    limits = attempt_limits(job, settings, max(1.0, beat.remaining_s()))

    shown = Throttle(artifact.update, 1.0)  # the UI: once a second

    def progress(rows: int) -> None:
        beat(rows)  # lease and fencing (throttled), run timeout
        shown(rows)

    try:
        produced = write_file(
            engine,
            plan,
            workdir / f"export-{job.id}",
            settings=settings,
            on_total=total,
            on_progress=progress,
            export_id=str(job.id),
            limits=limits,
            ahead=True,
        )
        artifact.update(produced.row_count)
    finally:
        artifact.close()
    if produced.ahead_s is not None:
        logger.info(
            "streamed the snapshot opened ahead (head start): it began opening %.3f s before"
            " the stream (snapshot, count, metadata keys, then the COPY)",
            produced.ahead_s,
        )
    produced.seconds = time.monotonic() - started
    logger.info(
        "wrote %s rows, %s bytes, sha256 %s", produced.row_count, produced.bytes, produced.sha256
    )
    return produced
