"""Jobs: the only code that writes ``export_jobs``, the single source of an export's status.

Every status change is one guarded UPDATE (``... WHERE status = 'IN_PROGRESS'``) in its own
short transaction, so other connections (the API, ``exportflow jobs``) see progress live; a
trigger in the database rejects any edge outside SCHEDULED -> IN_PROGRESS -> DONE | ERROR
(+ CANCELLED, EXPIRED).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa

from core.errors import ExportError, InvalidRequest, NotFound
from core.status import ACTIVE, Channel, Status

JOB_TAG = "exportflow-job:"
"""A flow run launched for an existing job carries the tag ``exportflow-job:<job id>``."""


def job_tag(job_id: uuid.UUID) -> str:
    return f"{JOB_TAG}{job_id}"


def tagged_job_id(tags: list[str] | tuple[str, ...]) -> uuid.UUID | None:
    """The job id a run's tags name, if any."""
    for tag in tags:
        if tag.startswith(JOB_TAG):
            try:
                return uuid.UUID(tag.removeprefix(JOB_TAG))
            except ValueError:
                return None
    return None


_COLUMNS = (
    "id, tenant, exported_object, format, channel, status, parameters, total, progress, result,"
    " error, flow_run_id, created_at, started_at, finished_at, expires_at, requested_by,"
    " requester_kind"
)

RequesterKind = Literal["api_key", "prefect", "os_user"]
"""Who asked for an export: an API key id, a Prefect deployment/user, an OS user (CLI)."""


@dataclass(frozen=True)
class Requester:
    """Who asked: ``kind`` says what ``id`` is (an API key id, a Prefect name, a user name)."""

    id: str
    kind: RequesterKind


@dataclass(frozen=True)
class Job:
    id: uuid.UUID
    tenant: str
    exported_object: str
    format: str
    channel: str
    status: Status
    parameters: dict[str, Any]
    total: int | None
    progress: int
    result: dict[str, Any] | None
    error: str | None
    flow_run_id: uuid.UUID | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    expires_at: datetime | None
    requested_by: str | None = None
    requester_kind: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            k: (
                str(v)
                if isinstance(v, uuid.UUID)
                else v.isoformat()
                if isinstance(v, datetime)
                else v
            )
            for k, v in self.__dict__.items()
        }


class JobStateError(ExportError):
    """The job is not in the state the operation needs (e.g. already finished)."""

    key = "job_state"


def _job(row: sa.Row[Any] | None, job_id: uuid.UUID | str) -> Job:
    if row is None:
        raise NotFound(f"export {job_id} not found", key="export_not_found")
    return Job(**row._mapping)


def _parameters_json(parameters: dict[str, Any]) -> str:
    """The parameters as jsonb text; PostgreSQL's jsonb cannot hold NUL, so refuse it clearly."""
    text = json.dumps(parameters)
    if "\\u0000" in text and _has_nul(parameters):
        raise InvalidRequest(
            "export parameters contain a NUL character (\\u0000), which no field, filter or"
            " title can hold; remove it",
            key="invalid_parameters",
        )
    return text


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_nul(v) for v in value)
    return False


def create_job(
    engine: sa.Engine,
    *,
    tenant: str,
    exported_object: str,
    format: str,
    channel: Channel,
    parameters: dict[str, Any],
    job_id: uuid.UUID | None = None,
    requester: Requester | None = None,
) -> Job:
    """Insert a SCHEDULED job with no duplicate check (runs from the CLI, UI and schedules)."""
    job, _ = create_or_get_active_job(
        engine,
        tenant=tenant,
        exported_object=exported_object,
        format=format,
        channel=channel,
        parameters=parameters,
        request_hash=None,
        job_id=job_id,
        requester=requester,
    )
    return job


def create_or_get_active_job(
    engine: sa.Engine,
    *,
    tenant: str,
    exported_object: str,
    format: str,
    channel: Channel,
    parameters: dict[str, Any],
    request_hash: str | None,
    download_token_hash: str | None = None,
    job_id: uuid.UUID | None = None,
    requester: Requester | None = None,
) -> tuple[Job, bool]:
    """Insert a SCHEDULED job unless an identical one is active; return (job, created).

    "Identical" is ``request_hash`` (tenant + object + normalised parameters); the partial
    unique index ``ux_export_jobs_active_request`` decides races, so concurrent callers get
    one job between them. Without a ``request_hash`` the job is always inserted.
    """
    new_id = job_id or uuid.uuid4()
    for _ in range(10):
        with engine.begin() as conn:
            row = conn.execute(
                sa.text(
                    "INSERT INTO export_jobs (id, tenant, exported_object, format, channel,"
                    " parameters, request_hash, download_token_hash, requested_by,"
                    " requester_kind)"
                    " VALUES (:id, :tenant, :object, :format, :channel, CAST(:params AS jsonb),"
                    " :hash, :token, :requested_by, :requester_kind)"
                    " ON CONFLICT (request_hash)"
                    " WHERE status IN ('SCHEDULED', 'IN_PROGRESS') AND request_hash IS NOT NULL"
                    f" DO NOTHING RETURNING {_COLUMNS}"
                ),
                {
                    "id": new_id,
                    "tenant": tenant,
                    "object": exported_object,
                    "format": format,
                    "channel": channel,
                    "params": _parameters_json(parameters),
                    "hash": request_hash,
                    "token": download_token_hash,
                    "requested_by": requester.id if requester else None,
                    "requester_kind": requester.kind if requester else None,
                },
            ).one_or_none()
            if row is not None:
                return _job(row, new_id), True
            existing = conn.execute(
                sa.text(
                    f"SELECT {_COLUMNS} FROM export_jobs WHERE request_hash = :hash"
                    " AND status IN ('SCHEDULED', 'IN_PROGRESS')"
                ),
                {"hash": request_hash},
            ).one_or_none()
            if existing is not None:
                return _job(existing, ""), False
        # the active twin finished between our INSERT and SELECT: try again
    raise JobStateError("could not create the export: identical exports keep finishing")


def set_flow_run(engine: sa.Engine, job_id: uuid.UUID, flow_run_id: uuid.UUID) -> None:
    """Record the flow run the launcher created (a later claim overwrites it with the same id)."""
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE export_jobs SET flow_run_id = :run WHERE id = :id AND flow_run_id IS NULL"
            ),
            {"id": job_id, "run": flow_run_id},
        )


def download_token_hash(engine: sa.Engine, job_id: uuid.UUID) -> str | None:
    """The stored hash of the export's download token (None: none issued yet)."""
    with engine.connect() as conn:
        value = conn.execute(
            sa.text("SELECT download_token_hash FROM export_jobs WHERE id = :id"), {"id": job_id}
        ).scalar_one_or_none()
    return None if value is None else str(value)


def issue_download_token_hash(engine: sa.Engine, job_id: uuid.UUID, token_hash: str) -> None:
    """Store the download token hash of a job that has none (runs started outside the API)."""
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE export_jobs SET download_token_hash = :hash"
                " WHERE id = :id AND download_token_hash IS NULL"
            ),
            {"id": job_id, "hash": token_hash},
        )


def delete_job(engine: sa.Engine, job_id: uuid.UUID, tenant: str) -> Job:
    """Remove a finished job row (``NotFound`` if absent or another tenant's)."""
    with engine.begin() as conn:
        row = conn.execute(
            sa.text(
                "DELETE FROM export_jobs WHERE id = :id AND tenant = :tenant"
                " AND status NOT IN ('SCHEDULED', 'IN_PROGRESS')"
                f" RETURNING {_COLUMNS}"
            ),
            {"id": job_id, "tenant": tenant},
        ).one_or_none()
        if row is None:
            current = conn.execute(
                sa.text("SELECT status FROM export_jobs WHERE id = :id AND tenant = :tenant"),
                {"id": job_id, "tenant": tenant},
            ).scalar_one_or_none()
            if current is not None:
                raise JobStateError(f"export {job_id} is {current}; cancel it first")
    return _job(row, job_id)


def get_job(engine: sa.Engine, job_id: uuid.UUID | str, tenant: str | None = None) -> Job:
    """The job, or ``NotFound`` (also when it belongs to another tenant)."""
    try:
        key = uuid.UUID(str(job_id))
    except ValueError:
        raise NotFound(f"export {job_id} not found", key="export_not_found") from None
    query = f"SELECT {_COLUMNS} FROM export_jobs WHERE id = :id"
    params: dict[str, Any] = {"id": key}
    if tenant is not None:
        query += " AND tenant = :tenant"
        params["tenant"] = tenant
    with engine.connect() as conn:
        return _job(conn.execute(sa.text(query), params).one_or_none(), job_id)


def list_jobs(
    engine: sa.Engine,
    *,
    tenant: str | None = None,
    status: str | tuple[str, ...] | None = None,
    exported_object: str | None = None,
    limit: int = 20,
    offset: int = 0,
    oldest_first: bool = False,
) -> tuple[list[Job], int]:
    """Newest first (or oldest first); returns (page, total matching).

    ``status`` may be a tuple: any of those statuses.
    """
    where = ["TRUE"]
    params: dict[str, Any] = {"limit": limit, "offset": offset}
    statuses = (status,) if isinstance(status, str) else status
    for name, value in (
        ("tenant", tenant),
        ("exported_object", exported_object),
    ):
        if value is not None:
            where.append(f"{name} = :{name}")
            params[name] = value
    if statuses is not None:
        names = []
        for i, value in enumerate(statuses):
            names.append(f":status_{i}")
            params[f"status_{i}"] = value
        where.append(f"status IN ({', '.join(names) or 'NULL'})")
    clause = " AND ".join(where)
    direction = "ASC" if oldest_first else "DESC"
    with engine.connect() as conn:
        total = conn.execute(
            sa.text(f"SELECT count(*) FROM export_jobs WHERE {clause}"), params
        ).scalar_one()
        rows = conn.execute(
            sa.text(
                f"SELECT {_COLUMNS} FROM export_jobs WHERE {clause}"
                f" ORDER BY created_at {direction}, id {direction} LIMIT :limit OFFSET :offset"
            ),
            params,
        )
        return [_job(r, "") for r in rows], int(total)


def _transition(
    engine: sa.Engine,
    job_id: uuid.UUID,
    sets: str,
    allowed: tuple[str, ...],
    params: dict[str, Any],
) -> Job:
    with engine.begin() as conn:
        row = conn.execute(
            sa.text(
                f"UPDATE export_jobs SET {sets} WHERE id = :id AND status IN :allowed"
                f" RETURNING {_COLUMNS}"
            ).bindparams(sa.bindparam("allowed", expanding=True)),
            {"id": job_id, "allowed": list(allowed), **params},
        ).one_or_none()
        if row is not None:
            return _job(row, job_id)
        current = conn.execute(
            sa.text("SELECT status FROM export_jobs WHERE id = :id"), {"id": job_id}
        ).scalar_one_or_none()
    if current is None:
        raise NotFound(f"export {job_id} not found", key="export_not_found")
    raise JobStateError(f"export {job_id} is {current}; expected {' or '.join(allowed)}")


def claim_job(engine: sa.Engine, job_id: uuid.UUID, flow_run_id: uuid.UUID | None) -> Job:
    """SCHEDULED -> IN_PROGRESS, recording the flow run that does the work."""
    return _transition(
        engine,
        job_id,
        "status = 'IN_PROGRESS', started_at = now(), flow_run_id = :run",
        ("SCHEDULED",),
        {"run": flow_run_id},
    )


def record_total(engine: sa.Engine, job_id: uuid.UUID, total: int) -> Job:
    return _transition(engine, job_id, "total = :total", ("IN_PROGRESS",), {"total": total})


def record_progress(engine: sa.Engine, job_id: uuid.UUID, progress: int) -> None:
    """Rows written so far; a no-op (not an error) once the job left IN_PROGRESS."""
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE export_jobs SET progress = :p WHERE id = :id AND status = 'IN_PROGRESS'"
            ),
            {"id": job_id, "p": progress},
        )


def finish_job(
    engine: sa.Engine, job_id: uuid.UUID, result: dict[str, Any], expires_at: datetime
) -> Job:
    """IN_PROGRESS -> DONE with the result (location, bytes, row_count, sha256)."""
    return _transition(
        engine,
        job_id,
        "status = 'DONE', result = CAST(:result AS jsonb), progress = :rows,"
        " finished_at = now(), expires_at = :expires",
        ("IN_PROGRESS",),
        {"result": json.dumps(result), "rows": result["row_count"], "expires": expires_at},
    )


def fail_job(engine: sa.Engine, job_id: uuid.UUID, error: str) -> Job:
    """SCHEDULED | IN_PROGRESS -> ERROR with a message a user can act on."""
    return _transition(
        engine,
        job_id,
        "status = 'ERROR', error = :error, finished_at = now()",
        ACTIVE,
        {"error": error[:4000]},
    )


def cancel_job(engine: sa.Engine, job_id: uuid.UUID, reason: str = "cancelled") -> Job:
    return _transition(
        engine,
        job_id,
        "status = 'CANCELLED', error = :error, finished_at = now()",
        ACTIVE,
        {"error": reason},
    )


def expire_job(engine: sa.Engine, job_id: uuid.UUID, reason: str) -> Job | None:
    """Mark a job EXPIRED with ``reason`` once its file is gone (``result.deleted_at`` set).

    From DONE or an active status; a job already EXPIRED only gets ``deleted_at`` recorded
    (it was expired by hand or by an earlier run that could not delete the file). Returns
    None if the job is gone or finished otherwise (ERROR, CANCELLED).
    """
    with engine.begin() as conn:
        row = conn.execute(
            sa.text(
                "UPDATE export_jobs SET status = 'EXPIRED',"
                " error = CASE WHEN status = 'EXPIRED' THEN coalesce(error, :reason)"
                " ELSE :reason END,"
                " finished_at = coalesce(finished_at, now()),"
                " result = CASE WHEN result IS NULL THEN NULL ELSE result"
                " || jsonb_build_object('deleted_at', now()) END"
                " WHERE id = :id AND status IN ('DONE', 'EXPIRED', 'SCHEDULED', 'IN_PROGRESS')"
                f" RETURNING {_COLUMNS}"
            ),
            {"id": job_id, "reason": reason[:4000]},
        ).one_or_none()
    return None if row is None else _job(row, job_id)


def due_for_expiry(engine: sa.Engine, now: datetime, limit: int = 1000) -> list[Job]:
    """DONE jobs past ``expires_at``, and EXPIRED jobs whose file was never deleted."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                f"SELECT {_COLUMNS} FROM export_jobs"
                " WHERE (status = 'DONE' AND expires_at <= :now)"
                " OR (status = 'EXPIRED' AND result ? 'location' AND NOT result ? 'deleted_at')"
                " ORDER BY expires_at NULLS FIRST, id LIMIT :limit"
            ),
            {"now": now, "limit": limit},
        )
        return [_job(r, "") for r in rows]


def jobs_of_requester(engine: sa.Engine, tenant: str, requested_by: str) -> list[Job]:
    """Every job of ``tenant`` that ``requested_by`` (an API key id, a user) asked for."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                f"SELECT {_COLUMNS} FROM export_jobs WHERE tenant = :tenant"
                " AND requested_by = :who ORDER BY created_at, id"
            ),
            {"tenant": tenant, "who": requested_by},
        )
        return [_job(r, "") for r in rows]


def jobs_holding_data(
    engine: sa.Engine, tenant: str, exported_objects: list[str], before: datetime
) -> list[Job]:
    """Jobs of ``tenant`` and these objects whose file exists or is being written, started
    before ``before``: DONE with a file not yet deleted, or IN_PROGRESS."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                f"SELECT {_COLUMNS} FROM export_jobs WHERE tenant = :tenant"
                " AND exported_object IN :objects"
                " AND ((status = 'DONE' AND finished_at <= :before)"
                " OR (status = 'IN_PROGRESS' AND started_at <= :before)"
                " OR (status = 'EXPIRED' AND result ? 'location'"
                " AND NOT result ? 'deleted_at'))"
                " ORDER BY created_at, id"
            ).bindparams(sa.bindparam("objects", expanding=True)),
            {"tenant": tenant, "objects": exported_objects or [""], "before": before},
        )
        return [_job(r, "") for r in rows]


def purge_jobs(engine: sa.Engine, finished_before: datetime) -> int:
    """Delete finished job rows older than ``finished_before`` whose file is gone."""
    with engine.begin() as conn:
        result = conn.execute(
            sa.text(
                "DELETE FROM export_jobs WHERE finished_at < :before"
                " AND (status IN ('ERROR', 'CANCELLED')"
                " OR (status = 'EXPIRED' AND (result IS NULL OR result ? 'deleted_at'"
                " OR NOT result ? 'location')))"
            ),
            {"before": finished_before},
        )
    return int(result.rowcount or 0)


def running_counts(engine: sa.Engine, tenant: str) -> tuple[int, int]:
    """(running exports of ``tenant``, running exports overall)."""
    with engine.connect() as conn:
        row = conn.execute(
            sa.text(
                "SELECT count(*) FILTER (WHERE tenant = :tenant), count(*) FROM export_jobs"
                " WHERE status = 'IN_PROGRESS'"
            ),
            {"tenant": tenant},
        ).one()
    return int(row[0]), int(row[1])


def queue_position(engine: sa.Engine, job: Job) -> int:
    """1-based place of a SCHEDULED job among its tenant's waiting exports (oldest first)."""
    with engine.connect() as conn:
        ahead = conn.execute(
            sa.text(
                "SELECT count(*) FROM export_jobs WHERE tenant = :tenant"
                " AND status = 'SCHEDULED' AND (created_at, id) < (:created, :id)"
            ),
            {"tenant": job.tenant, "created": job.created_at, "id": job.id},
        ).scalar_one()
    return int(ahead) + 1
