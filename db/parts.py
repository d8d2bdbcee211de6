"""Parts: the only code that writes ``export_parts``, the rows of a parallel export's ranges.

The coordinator creates the rows (``create_parts``) and re-arms a failed one
(``retry_part``: a new attempt). A part run writes only its own row and only while the
row's attempt is the attempt it was launched as (``start_part``, ``record_part_progress``,
``note_part_backend``, ``finish_part``, ``fail_part``): a stale run of an earlier attempt
changes nothing. Part runs never write ``export_jobs``; the coordinator turns the parts'
progress into the job's (``db.jobs.record_progress``).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa

PartStatus = Literal["PENDING", "RUNNING", "DONE", "FAILED"]

_COLUMNS = (
    "job_id, part, attempt, status, lower_bound, upper_bound, expected_rows, progress,"
    " row_count, bytes, sha256, storage_key, flow_run_id, host, pid, backend_pid, error,"
    " created_at, started_at, finished_at"
)


@dataclass(frozen=True)
class Part:
    job_id: uuid.UUID
    part: int
    attempt: int
    status: PartStatus
    lower_bound: dict[str, Any] | None
    upper_bound: dict[str, Any] | None
    expected_rows: int
    progress: int
    row_count: int | None
    bytes: int | None
    sha256: str | None
    storage_key: str | None
    flow_run_id: uuid.UUID | None
    host: str | None
    pid: int | None
    backend_pid: int | None
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


@dataclass(frozen=True)
class PartRange:
    """One key range: rows after ``lower`` up to and including ``upper`` (None: open end)."""

    lower: dict[str, Any] | None
    upper: dict[str, Any] | None
    expected_rows: int


def create_parts(engine: sa.Engine, job_id: uuid.UUID, ranges: list[PartRange]) -> None:
    """Insert the parts of a job (replacing any left by an earlier attempt of the job)."""
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM export_parts WHERE job_id = :job"), {"job": job_id})
        conn.execute(
            sa.text(
                "INSERT INTO export_parts (job_id, part, lower_bound, upper_bound, expected_rows)"
                " VALUES (:job, :part, CAST(:lower AS jsonb), CAST(:upper AS jsonb), :rows)"
            ),
            [
                {
                    "job": job_id,
                    "part": i,
                    "lower": json.dumps(r.lower),
                    "upper": json.dumps(r.upper),
                    "rows": r.expected_rows,
                }
                for i, r in enumerate(ranges)
            ],
        )


def list_parts(engine: sa.Engine, job_id: uuid.UUID) -> list[Part]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(f"SELECT {_COLUMNS} FROM export_parts WHERE job_id = :job ORDER BY part"),
            {"job": job_id},
        )
        return [Part(**r._mapping) for r in rows]


def _guarded(
    engine: sa.Engine,
    job_id: uuid.UUID,
    part: int,
    attempt: int,
    sets: str,
    statuses: tuple[str, ...],
    params: dict[str, Any],
) -> bool:
    with engine.begin() as conn:
        row = conn.execute(
            sa.text(
                f"UPDATE export_parts SET {sets} WHERE job_id = :job AND part = :part"
                " AND attempt = :attempt AND status IN :statuses RETURNING part"
            ).bindparams(sa.bindparam("statuses", expanding=True)),
            {"job": job_id, "part": part, "attempt": attempt, "statuses": list(statuses), **params},
        ).one_or_none()
    return row is not None


def start_part(
    engine: sa.Engine,
    job_id: uuid.UUID,
    part: int,
    attempt: int,
    *,
    flow_run_id: uuid.UUID | None,
    host: str,
    pid: int,
) -> bool:
    """PENDING -> RUNNING for this attempt; False if the attempt is not the current one."""
    return _guarded(
        engine,
        job_id,
        part,
        attempt,
        "status = 'RUNNING', started_at = now(), flow_run_id = :run, host = :host, pid = :pid,"
        " progress = 0, error = NULL",
        ("PENDING",),
        {"run": flow_run_id, "host": host[:200], "pid": pid},
    )


def note_part_backend(
    engine: sa.Engine, job_id: uuid.UUID, part: int, attempt: int, backend_pid: int
) -> None:
    """The PostgreSQL backend reading this part (for ``pg_stat_activity`` and fault drills)."""
    _guarded(engine, job_id, part, attempt, "backend_pid = :b", ("RUNNING",), {"b": backend_pid})


def record_part_progress(
    engine: sa.Engine, job_id: uuid.UUID, part: int, attempt: int, rows: int
) -> None:
    _guarded(engine, job_id, part, attempt, "progress = :rows", ("RUNNING",), {"rows": rows})


def finish_part(
    engine: sa.Engine,
    job_id: uuid.UUID,
    part: int,
    attempt: int,
    *,
    row_count: int,
    bytes: int,
    sha256: str,
    storage_key: str,
) -> bool:
    """RUNNING -> DONE with the stored part file; False if this attempt was superseded."""
    return _guarded(
        engine,
        job_id,
        part,
        attempt,
        "status = 'DONE', finished_at = now(), progress = :rows, row_count = :rows,"
        " bytes = :bytes, sha256 = :sha, storage_key = :key",
        ("RUNNING",),
        {"rows": row_count, "bytes": bytes, "sha": sha256, "key": storage_key},
    )


def fail_part(engine: sa.Engine, job_id: uuid.UUID, part: int, attempt: int, error: str) -> bool:
    return _guarded(
        engine,
        job_id,
        part,
        attempt,
        "status = 'FAILED', finished_at = now(), error = :error",
        ("PENDING", "RUNNING"),
        {"error": error[:4000]},
    )


def retry_part(engine: sa.Engine, job_id: uuid.UUID, part: int, attempt: int) -> int | None:
    """Re-arm ``attempt`` of a part as the next attempt (PENDING); returns its number, or
    None when that attempt finished (DONE) or was already superseded meanwhile."""
    with engine.begin() as conn:
        new = conn.execute(
            sa.text(
                "UPDATE export_parts SET attempt = attempt + 1, status = 'PENDING',"
                " progress = 0, started_at = NULL, finished_at = NULL, flow_run_id = NULL,"
                " pid = NULL, backend_pid = NULL"
                " WHERE job_id = :job AND part = :part AND attempt = :attempt"
                " AND status <> 'DONE' RETURNING attempt"
            ),
            {"job": job_id, "part": part, "attempt": attempt},
        ).scalar_one_or_none()
    return None if new is None else int(new)


def abandon_parts(engine: sa.Engine, job_id: uuid.UUID) -> int:
    """The export ended without its parts: every unfinished part gets a new attempt number
    and FAILED, so a run still streaming can no longer record (or keep) its file."""
    with engine.begin() as conn:
        result = conn.execute(
            sa.text(
                "UPDATE export_parts SET attempt = attempt + 1, status = 'FAILED',"
                " finished_at = now(), error = coalesce(error, 'abandoned: the export ended')"
                " WHERE job_id = :job AND status <> 'DONE'"
            ),
            {"job": job_id},
        )
    return int(result.rowcount)
