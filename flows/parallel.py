"""A parallel export's coordinator: one snapshot, key ranges, part runs, one object.

    BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SELECT pg_export_snapshot()
    count (+ metadata keys) -> choose the part count -> boundary rows (evenly spaced row
    numbers of the export's order) -> one ``export_parts`` row per range -> launch the parts
    -> wait, summing their progress into the job, relaunching a failed part alone as its
    next attempt -> every part DONE: end the snapshot transaction -> assemble the part files
    into the final object -> remove the temp prefix.

The snapshot transaction stays open until every part (retries included) has finished, since
a part can import it only while it exists. Parts are launched on the work pool
(``run_deployment`` of ``export-part``: child runs of this one in the UI) or, without a pool
(tests, dev), in threads of this process. The concatenation of the parts, in order, is the
single-process file: part 0 writes the CSV header / JSON ``[``, the last one the ``]``; a
compressed part is its own gzip member / zstd frame (a valid stream when concatenated).
Parquet parts are rewritten row group by row group into one file. The result is checked:
the parts' rows must add up to the snapshot's count.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from core import nudge
from core.errors import ExportError, TimedOut
from core.settings import Settings, get_settings
from core.types import FieldType
from db import jobs, parts
from db.engine import get_engine
from db.jobs import Job
from query.plan import PARALLEL_FORMATS, ExportPlan
from query.split import bound_from_row, boundaries_statement, split_positions
from storage import Stored, object_key
from storage.blocks import storage_from_settings
from storage.keys import parts_prefix
from tasks.extract import Limits, export_snapshot
from tasks.parts import PartSpec, run_part
from tasks.write import Produced, check_row_cap, extension_for

log = logging.getLogger(__name__)

POLL_S = 0.5


class PartFailed(ExportError):
    """A part failed every attempt it was given."""

    key = "part_failed"


class PartLauncher(Protocol):
    """Starts part runs and says whether one has ended (however it ended)."""

    def workers(self) -> int: ...

    def launch(self, spec: PartSpec) -> None: ...

    def ended(self, part: int, attempt: int) -> bool: ...

    def stop(self) -> None: ...


class ThreadParts:
    """Parts in threads of this process (no work pool: tests, development), at most
    ``THREADS`` at a time (each holds a database connection)."""

    THREADS = 4

    def __init__(self) -> None:
        self._threads: dict[tuple[int, int], threading.Thread] = {}
        self._slots = threading.BoundedSemaphore(self.THREADS)

    def workers(self) -> int:
        return min(os.cpu_count() or 1, self.THREADS)

    def launch(self, spec: PartSpec) -> None:
        def run() -> None:
            try:
                with self._slots:
                    run_part(spec)
            except BaseException as exc:  # recorded on the part row by run_part
                log.info("part %s attempt %s failed: %s", spec.part, spec.attempt, exc)

        thread = threading.Thread(target=run, name=f"part-{spec.part}-{spec.attempt}", daemon=True)
        self._threads[(spec.part, spec.attempt)] = thread
        thread.start()

    def ended(self, part: int, attempt: int) -> bool:
        thread = self._threads.get((part, attempt))
        return thread is not None and not thread.is_alive()

    def stop(self) -> None:
        """Threads cannot be stopped; a superseded part discards its own file."""


class DeploymentParts:
    """One ``export-part`` run per part on the work pool, as child runs of this flow run."""

    def __init__(self, job: Job, settings: Settings, job_attempt: int = 1) -> None:
        self._job = job
        self._settings = settings
        self._job_attempt = job_attempt
        self._runs: dict[tuple[int, int], uuid.UUID] = {}

    def workers(self) -> int:
        from prefect import get_client

        try:
            with get_client(sync_client=True) as client:
                found = client.read_workers_for_work_pool(self._settings.work_pool)
            return max(1, sum(1 for w in found if str(w.status).upper().endswith("ONLINE")))
        except Exception as exc:  # the count only sizes "auto"
            log.warning("could not count the pool's workers: %s", exc)
            return 1

    def launch(self, spec: PartSpec) -> None:
        from prefect.deployments import run_deployment

        from flows.parts import PART_DEPLOYMENT

        key = f"{self._job.id}-{self._job_attempt}-part-{spec.part}"
        if spec.attempt > 1:
            key += f"-try-{spec.attempt}"
        run = run_deployment(
            name=PART_DEPLOYMENT,
            parameters=spec.as_parameters(),
            idempotency_key=key,
            timeout=0,
            tags=["exportflow", "exportflow-part", f"tenant:{self._job.tenant}"],
        )
        nudge.send()  # a worker on this machine takes the part at once
        self._runs[(spec.part, spec.attempt)] = run.id  # type: ignore[union-attr]

    def ended(self, part: int, attempt: int) -> bool:
        from prefect import get_client

        run_id = self._runs.get((part, attempt))
        if run_id is None:
            return False
        with get_client(sync_client=True) as client:
            state = client.read_flow_run(run_id).state
        return bool(state is not None and state.is_final())

    def stop(self) -> None:
        from prefect import get_client
        from prefect.states import Cancelling

        with get_client(sync_client=True) as client:
            for run_id in self._runs.values():
                try:
                    state = client.read_flow_run(run_id).state
                    if state is not None and not state.is_final():
                        client.set_flow_run_state(run_id, Cancelling(), force=True)
                except Exception as exc:
                    log.warning("could not cancel part run %s: %s", run_id, exc)


def part_launcher(job: Job, settings: Settings) -> PartLauncher:
    """Deployment runs on the pool, or threads (``EXPORTFLOW_PARTS_LAUNCHER``)."""
    choice = settings.parts_launcher
    if choice == "auto":
        from prefect.runtime import deployment

        choice = "deployment" if deployment.id else "inprocess"
    if choice == "deployment":
        return DeploymentParts(job, settings, job_attempt=job.attempt)
    return ThreadParts()


def part_count(plan: ExportPlan, total: int, settings: Settings, workers: int) -> int:
    """How many parts: as asked (never more than rows), or for ``auto`` by rows and workers."""
    if total < 2:
        return 1
    if plan.parallelism == "auto":
        if plan.format not in PARALLEL_FORMATS or plan.partition_by:
            return 1
        by_rows = total // settings.parallel_min_part_rows
        return max(1, min(settings.max_parallelism, workers, by_rows))
    return max(1, min(int(plan.parallelism), total))


def run_parallel(
    job: Job, plan: ExportPlan, workdir: Path, now: datetime, deadline: float
) -> tuple[Produced, Stored] | None:
    """Export ``plan`` in parts and store it as one object; None when one part is enough
    (the caller then runs the single-process path). The coordinator holds the job's lease
    (renewed while it waits, fenced by the job's attempt) and the run timeout (``deadline``,
    monotonic)."""
    engine = get_engine()
    settings = get_settings()
    launcher = part_launcher(job, settings)
    storage = storage_from_settings(settings)
    prefix = parts_prefix(job.tenant, job.id)
    try:
        limits = Limits(settings.statement_timeout_s, settings.lock_timeout_s)
        with export_snapshot(engine, plan, limits) as snap:
            jobs.record_total(engine, job.id, job.attempt, snap.total)
            check_row_cap(plan, snap.total, settings)
            n = part_count(plan, snap.total, settings, launcher.workers())
            if n <= 1:
                return None
            positions = split_positions(snap.total, n)
            bounds = [
                bound_from_row(r) for r in snap.conn.execute(boundaries_statement(plan, positions))
            ]
            if len(bounds) != n - 1:
                raise ExportError(f"expected {n - 1} part boundaries, found {len(bounds)}")
            edges = [0, *positions, snap.total]
            ranges = [
                parts.PartRange(
                    bounds[i - 1] if i else None,
                    bounds[i] if i < n - 1 else None,
                    edges[i + 1] - edges[i],
                )
                for i in range(n)
            ]
            parts.create_parts(engine, job.id, ranges)
            specs = [
                PartSpec(
                    str(job.id),
                    i,
                    1,
                    n,
                    snap.id,
                    r.lower,
                    r.upper,
                    snap.metadata_keys,
                    now.isoformat(),
                    snap.metadata_types,
                )
                for i, r in enumerate(ranges)
            ]
            log.info("export %s: %s rows in %s parts, snapshot %s", job.id, snap.total, n, snap.id)
            for spec in specs:
                launcher.launch(spec)
            done = _wait(engine, job, specs, launcher, settings, deadline)
            total, keys, types = snap.total, snap.metadata_keys, snap.metadata_types
        # the snapshot is released: every part has read its range
        rows = sum(p.row_count or 0 for p in done)
        if rows != total:
            raise ExportError(f"the parts wrote {rows:,} rows; the snapshot counted {total:,}")
        jobs.heartbeat(engine, job.id, job.attempt, lease_s=settings.lease_s)  # still ours?
        produced, stored = _assemble(job, plan, done, keys, types, total, workdir, settings)
        return produced, stored
    except BaseException:
        parts.abandon_parts(engine, job.id)
        launcher.stop()
        raise
    finally:
        try:
            storage.remove_prefix(prefix)
        except Exception as exc:  # the reaper sweeps */tmp/parts/ later
            log.warning("could not remove part files under %s: %s", prefix, exc)


def _wait(
    engine: Any,
    job: Job,
    specs: list[PartSpec],
    launcher: PartLauncher,
    settings: Settings,
    deadline: float,
) -> list[parts.Part]:
    """Until every part is DONE: renew the job's lease with the parts' summed progress
    (``StopAttempt`` once the job was cancelled or taken over), enforce the run timeout, and
    relaunch failed parts alone."""
    while True:
        rows = parts.list_parts(engine, job.id)
        jobs.heartbeat(
            engine,
            job.id,
            job.attempt,
            progress=sum(p.progress for p in rows),
            lease_s=settings.lease_s,
        )
        if all(p.status == "DONE" for p in rows):
            return rows
        if time.monotonic() > deadline:
            raise TimedOut(
                f"the export ran longer than the run timeout of {settings.run_timeout_s} s"
                " (EXPORTFLOW_RUN_TIMEOUT_S)",
                key="run_timeout",
            )
        for p in rows:
            if p.status == "DONE":
                continue
            if p.status == "FAILED" or launcher.ended(p.part, p.attempt):
                if p.attempt >= settings.part_attempts:
                    fresh = parts.list_parts(engine, job.id)[p.part]
                    if fresh.status == "DONE":  # it finished after we read the rows
                        continue
                    raise PartFailed(
                        f"part {p.part + 1} of {len(rows)} failed {p.attempt} times;"
                        f" last error: {p.error or 'its run ended without finishing'}"
                    )
                attempt = parts.retry_part(engine, job.id, p.part, p.attempt)
                if attempt is None:  # it finished after we read the rows
                    continue
                log.warning(
                    "export %s: part %s attempt %s failed (%s); attempt %s",
                    job.id,
                    p.part,
                    p.attempt,
                    p.error or "run ended",
                    attempt,
                )
                launcher.launch(replace(specs[p.part], attempt=attempt))
        time.sleep(POLL_S)


def _assemble(
    job: Job,
    plan: ExportPlan,
    done: list[parts.Part],
    metadata_keys: list[str],
    metadata_types: dict[str, FieldType],
    total: int,
    workdir: Path,
    settings: Settings,
) -> tuple[Produced, Stored]:
    extension, content_type = extension_for(plan)
    key = object_key(job.tenant, job.exported_object, job.id, extension, job.created_at)
    storage = storage_from_settings(settings)
    part_keys = [str(p.storage_key) for p in done]
    extra: dict[str, Any] = {}
    if plan.format == "parquet":
        path = workdir / "assembled.parquet"
        size, sha256, row_groups = _rewrite_parquet(storage.download, part_keys, path, workdir)
        stored = storage.put(path, key)
        method = "parquet-rewrite"
        extra["row_groups"] = row_groups
    else:
        assembled = storage.concatenate(part_keys, key, workdir)
        stored, size, sha256, method = (
            assembled.stored,
            assembled.bytes,
            assembled.sha256,
            assembled.method,
        )
    stored = replace(stored, block=settings.storage_block)
    extra["parallel"] = {
        "parts": len(done),
        "assembly": method,
        "part_rows": [p.row_count for p in done],
        "part_attempts": [p.attempt for p in done],
    }
    columns = plan.columns(metadata_keys, metadata_types)
    produced = Produced(
        path=workdir / "assembled",
        extension=extension,
        content_type=content_type,
        bytes=size,
        sha256=sha256,
        row_count=total,
        total=total,
        columns=[{"name": c.name, "label": c.label, "type": c.type} for c in columns],
        metadata_keys=metadata_keys,
        extra=extra,
    )
    return produced, stored


def _rewrite_parquet(
    download: Callable[[str, Path], None], keys: list[str], path: Path, workdir: Path
) -> tuple[int, str, int]:
    """Copy the parts' row groups, in order, into one Parquet file (one group in memory)."""
    import pyarrow.parquet as pq

    from exporters.base import HashingFile

    row_groups = 0
    with path.open("wb") as raw:
        hashing = HashingFile(raw)
        writer: pq.ParquetWriter | None = None
        for i, key in enumerate(keys):
            local = workdir / f"part-{i}.parquet"
            download(key, local)
            source = pq.ParquetFile(local)
            if writer is None:
                writer = pq.ParquetWriter(
                    hashing,
                    source.schema_arrow,
                    compression="zstd",
                    version="2.6",
                    write_statistics=True,
                )
            for group in range(source.num_row_groups):
                table = source.read_row_group(group)
                writer.write_table(table, row_group_size=max(1, table.num_rows))
                row_groups += 1
            source.close()
            local.unlink()
        if writer is not None:
            writer.close()
    return hashing.bytes, hashing.sha256.hexdigest(), row_groups
