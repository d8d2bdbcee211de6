"""Jobs: the only code that writes ``export_jobs``, the single source of an export's status.

Every status change is one guarded UPDATE (``... WHERE status = 'IN_PROGRESS'``) in its own
short transaction, so other connections (the API, ``exportflow jobs``) see progress live; a
trigger in the database rejects any edge outside SCHEDULED -> IN_PROGRESS -> DONE | ERROR
(+ CANCELLED, EXPIRED).

Attempts: a job is on attempt n (1 = the first launch). The run that claims attempt n holds a
lease (``lease_expires_at``) and renews it at every chunk (``heartbeat``); every write it
makes is fenced by its attempt number (``... AND attempt = n``), so an attempt that lost the
job (the reaper started attempt n+1, or the job was cancelled) changes nothing and is told to
stop (``StopAttempt``). A launched attempt that nobody claimed has the same deadline: the
reaper (``lost_jobs``, ``relaunch``, ``give_up``) ends or relaunches whatever misses it.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa

from core.errors import (
    AttemptSuperseded,
    ExportCancelled,
    ExportError,
    InvalidRequest,
    NotFound,
    StopAttempt,
)
from core.status import ACTIVE, Channel, Status

JOB_TAG = "exportflow-job:"
"""A flow run launched for an existing job carries the tag ``exportflow-job:<job id>``."""
ATTEMPT_TAG = "exportflow-attempt:"
"""... and the attempt it was launched for, ``exportflow-attempt:<n>``."""


def job_tag(job_id: uuid.UUID) -> str:
    return f"{JOB_TAG}{job_id}"


def attempt_tag(attempt: int) -> str:
    return f"{ATTEMPT_TAG}{attempt}"


def idempotency_key(job_id: uuid.UUID, attempt: int) -> str:
    """The Prefect idempotency key of a job's attempt: launching it twice starts one run."""
    return f"export-{job_id}-{attempt}"


def tagged_attempt(tags: list[str] | tuple[str, ...]) -> int | None:
    """The attempt number a run's tags name, if any."""
    for tag in tags:
        if tag.startswith(ATTEMPT_TAG) and tag.removeprefix(ATTEMPT_TAG).isdigit():
            return int(tag.removeprefix(ATTEMPT_TAG))
    return None


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
    " error, flow_run_id, created_at, started_at, finished_at, expires_at, attempt,"
    " attempt_started_at, lease_expires_at, heartbeat_at, last_error, retry_of, requested_by,"
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
    attempt: int = 1
    attempt_started_at: datetime | None = None
    lease_expires_at: datetime | None = None
    heartbeat_at: datetime | None = None
    last_error: str | None = None
    retry_of: uuid.UUID | None = None
    requested_by: str | None = None
    requester_kind: str | None = None

    @property
    def claimed(self) -> bool:
        """A run has started the current attempt (not merely launched it)."""
        return self.attempt_started_at is not None

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
    retry_of: uuid.UUID | None = None,
    launch_grace_s: float = 120,
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
        retry_of=retry_of,
        launch_grace_s=launch_grace_s,
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
    retry_of: uuid.UUID | None = None,
    launch_grace_s: float = 120,
    requester: Requester | None = None,
) -> tuple[Job, bool]:
    """Insert a SCHEDULED job unless an identical one is live; return (job, created).

    "Identical" is ``request_hash`` (tenant + object + normalised parameters); the partial
    unique index ``ux_export_jobs_active_request`` decides races, so concurrent callers get
    one job between them. Without a ``request_hash`` the job is always inserted. Only a *live*
    twin is joined: one whose lease ran out (its worker is lost) is ended ERROR, superseded by
    the new job. A new job must be claimed within ``launch_grace_s`` or the reaper acts.
    """
    new_id = job_id or uuid.uuid4()
    for _ in range(10):
        with engine.begin() as conn:
            if request_hash is not None:
                conn.execute(
                    sa.text(
                        "UPDATE export_jobs SET status = 'ERROR', finished_at = now(),"
                        " error = coalesce(last_error || '; ', '')"
                        " || 'its worker was lost (lease ran out); superseded by export ' || :new"
                        " WHERE request_hash = :hash AND status IN ('SCHEDULED', 'IN_PROGRESS')"
                        " AND lease_expires_at <= now()"
                    ),
                    {"hash": request_hash, "new": str(new_id)},
                )
            row = conn.execute(
                sa.text(
                    "INSERT INTO export_jobs (id, tenant, exported_object, format, channel,"
                    " parameters, request_hash, download_token_hash, retry_of, lease_expires_at,"
                    " requested_by, requester_kind)"
                    " VALUES (:id, :tenant, :object, :format, :channel, CAST(:params AS jsonb),"
                    " :hash, :token, :retry_of, now() + make_interval(secs => :grace),"
                    " :requested_by, :requester_kind)"
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
                    "retry_of": retry_of,
                    "grace": float(launch_grace_s),
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
    attempt: int | None = None,
) -> Job:
    """One guarded UPDATE; with ``attempt``, fenced: another attempt's job is not touched and
    the caller learns it must stop (``StopAttempt``)."""
    fence = " AND attempt = :attempt" if attempt is not None else ""
    with engine.begin() as conn:
        row = conn.execute(
            sa.text(
                f"UPDATE export_jobs SET {sets} WHERE id = :id AND status IN :allowed{fence}"
                f" RETURNING {_COLUMNS}"
            ).bindparams(sa.bindparam("allowed", expanding=True)),
            {"id": job_id, "allowed": list(allowed), "attempt": attempt, **params},
        ).one_or_none()
        if row is not None:
            return _job(row, job_id)
        current = conn.execute(
            sa.text("SELECT status, attempt FROM export_jobs WHERE id = :id"), {"id": job_id}
        ).one_or_none()
    if attempt is not None:
        raise stop_reason(job_id, attempt, current)
    if current is None:
        raise NotFound(f"export {job_id} not found", key="export_not_found")
    raise JobStateError(f"export {job_id} is {current[0]}; expected {' or '.join(allowed)}")


def stop_reason(job_id: uuid.UUID, attempt: int, current: Any) -> StopAttempt:
    """Why attempt ``attempt`` may no longer write (``current``: the row's status, attempt)."""
    if current is None:
        return ExportCancelled(f"export {job_id} was deleted; attempt {attempt} stops")
    status, now_attempt = current[0], current[1]
    if status == "CANCELLED":
        return ExportCancelled(f"export {job_id} was cancelled; attempt {attempt} stops")
    if now_attempt != attempt:
        return AttemptSuperseded(
            f"export {job_id} is on attempt {now_attempt}; attempt {attempt} lost its lease"
            " and stops without writing"
        )
    return StopAttempt(f"export {job_id} is {status}; attempt {attempt} stops")


def claim_job(
    engine: sa.Engine,
    job_id: uuid.UUID,
    flow_run_id: uuid.UUID | None,
    *,
    attempt: int | None = None,
    lease_s: float = 60,
) -> Job:
    """Start the job's current attempt (``attempt``, when the run was launched for one):
    SCHEDULED | IN_PROGRESS -> IN_PROGRESS with a lease, recording the flow run doing it.

    Only a launched, unclaimed attempt can be claimed: two runs never hold one attempt.
    """
    fence = " AND attempt = :attempt" if attempt is not None else ""
    with engine.begin() as conn:
        row = conn.execute(
            sa.text(
                "UPDATE export_jobs SET status = 'IN_PROGRESS', flow_run_id = :run,"
                " started_at = coalesce(started_at, now()), attempt_started_at = now(),"
                " heartbeat_at = now(), lease_expires_at = now() + make_interval(secs => :lease),"
                " progress = 0"
                " WHERE id = :id AND status IN ('SCHEDULED', 'IN_PROGRESS')"
                f" AND attempt_started_at IS NULL{fence} RETURNING {_COLUMNS}"
            ),
            {"id": job_id, "run": flow_run_id, "attempt": attempt, "lease": float(lease_s)},
        ).one_or_none()
        if row is not None:
            return _job(row, job_id)
        current = conn.execute(
            sa.text("SELECT status, attempt FROM export_jobs WHERE id = :id"), {"id": job_id}
        ).one_or_none()
    if current is None:
        raise NotFound(f"export {job_id} not found", key="export_not_found")
    raise JobStateError(
        f"export {job_id} is {current[0]} on attempt {current[1]}, already started;"
        f" cannot start attempt {attempt or current[1]} here"
    )


def record_total(engine: sa.Engine, job_id: uuid.UUID, attempt: int, total: int) -> Job:
    return _transition(
        engine, job_id, "total = :total", ("IN_PROGRESS",), {"total": total}, attempt
    )


def heartbeat(
    engine: sa.Engine,
    job_id: uuid.UUID,
    attempt: int,
    *,
    progress: int | None = None,
    lease_s: float = 60,
) -> None:
    """Renew the attempt's lease (and record rows written so far); ``StopAttempt`` if the
    attempt lost the job (superseded, cancelled, deleted, finished)."""
    _transition(
        engine,
        job_id,
        "lease_expires_at = now() + make_interval(secs => :lease), heartbeat_at = now(),"
        " progress = coalesce(CAST(:p AS bigint), progress)",
        ("IN_PROGRESS",),
        {"p": progress, "lease": float(lease_s)},
        attempt,
    )


def finish_job(
    engine: sa.Engine, job_id: uuid.UUID, attempt: int, result: dict[str, Any], expires_at: datetime
) -> Job:
    """IN_PROGRESS -> DONE with the result (location, bytes, row_count, sha256)."""
    return _transition(
        engine,
        job_id,
        "status = 'DONE', result = CAST(:result AS jsonb), progress = :rows,"
        " finished_at = now(), expires_at = :expires, lease_expires_at = NULL",
        ("IN_PROGRESS",),
        {"result": json.dumps(result), "rows": result["row_count"], "expires": expires_at},
        attempt,
    )


def hold_launch(engine: sa.Engine, job_id: uuid.UUID, attempt: int | None, hold_s: float) -> None:
    """A run is waiting (SCHEDULED) for a concurrency slot: extend its launch lease."""
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE export_jobs SET lease_expires_at = greatest(lease_expires_at,"
                " now() + make_interval(secs => :hold))"
                " WHERE id = :id AND status = 'SCHEDULED'"
                " AND (CAST(:attempt AS integer) IS NULL OR attempt = :attempt)"
            ),
            {"id": job_id, "attempt": attempt, "hold": float(hold_s)},
        )


def fail_job(engine: sa.Engine, job_id: uuid.UUID, error: str, attempt: int | None = None) -> Job:
    """SCHEDULED | IN_PROGRESS -> ERROR with a message a user can act on (fenced by
    ``attempt`` when an attempt reports its own failure)."""
    return _transition(
        engine,
        job_id,
        "status = 'ERROR', error = :error, finished_at = now(), lease_expires_at = NULL",
        ACTIVE,
        {"error": error[:4000]},
        attempt,
    )


def expire_job(engine: sa.Engine, job_id: uuid.UUID, attempt: int, error: str) -> Job:
    """IN_PROGRESS -> EXPIRED: the attempt hit a time limit (the message names it)."""
    return _transition(
        engine,
        job_id,
        "status = 'EXPIRED', error = :error, finished_at = now(), lease_expires_at = NULL",
        ACTIVE,
        {"error": error[:4000]},
        attempt,
    )


def cancel_job(engine: sa.Engine, job_id: uuid.UUID, reason: str = "cancelled") -> Job:
    """SCHEDULED | IN_PROGRESS -> CANCELLED, whatever attempt runs (it stops at its next
    chunk)."""
    return _transition(
        engine,
        job_id,
        "status = 'CANCELLED', error = :error, finished_at = now(), lease_expires_at = NULL",
        ACTIVE,
        {"error": reason},
    )


def retry_in_place(
    engine: sa.Engine, job_id: uuid.UUID, attempt: int, error: str, *, hold_s: float
) -> Job:
    """Attempt ``attempt`` failed transiently and its run starts attempt n+1 itself (after a
    backoff): the lease covers ``hold_s`` (backoff + a lease) so the reaper leaves it alone."""
    return _transition(
        engine,
        job_id,
        "attempt = attempt + 1, attempt_started_at = now(), last_error = :error, progress = 0,"
        " lease_expires_at = now() + make_interval(secs => :hold), heartbeat_at = now()",
        ("IN_PROGRESS",),
        {"error": error[:4000], "hold": float(hold_s)},
        attempt,
    )


def job_for_run(engine: sa.Engine, flow_run_id: uuid.UUID) -> Job | None:
    """The job a flow run claimed (its latest), if any."""
    with engine.connect() as conn:
        row = conn.execute(
            sa.text(
                f"SELECT {_COLUMNS} FROM export_jobs WHERE flow_run_id = :run"
                " ORDER BY created_at DESC LIMIT 1"
            ),
            {"run": flow_run_id},
        ).one_or_none()
    return None if row is None else _job(row, "")


def end_lease_of_run(engine: sa.Engine, flow_run_id: uuid.UUID, error: str) -> Job | None:
    """The run that holds a job's attempt crashed: end its lease now so the reaper acts at
    once rather than when the lease would have run out."""
    with engine.begin() as conn:
        row = conn.execute(
            sa.text(
                "UPDATE export_jobs SET lease_expires_at = now(), last_error = :error"
                " WHERE flow_run_id = :run AND status IN ('SCHEDULED', 'IN_PROGRESS')"
                f" AND attempt_started_at IS NOT NULL RETURNING {_COLUMNS}"
            ),
            {"run": flow_run_id, "error": error[:4000]},
        ).one_or_none()
    return None if row is None else _job(row, "")


def lost_jobs(engine: sa.Engine, limit: int = 100) -> list[Job]:
    """Active jobs whose lease ran out: a lost worker, or a launch nobody claimed."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                f"SELECT {_COLUMNS} FROM export_jobs WHERE status IN ('SCHEDULED', 'IN_PROGRESS')"
                " AND coalesce(lease_expires_at, created_at) < now()"
                " ORDER BY lease_expires_at LIMIT :limit"
            ),
            {"limit": limit},
        )
        return [_job(r, "") for r in rows]


def mark_expired(engine: sa.Engine, job_id: uuid.UUID, reason: str) -> Job | None:
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


def relaunch(
    engine: sa.Engine, job_id: uuid.UUID, attempt: int, error: str, *, hold_s: float
) -> Job | None:
    """Move a lost job from attempt n to n+1, launched but not claimed; the new attempt has
    ``hold_s`` to be claimed. None if someone else acted first (another reaper, a late
    heartbeat, a cancel): exactly one caller wins."""
    with engine.begin() as conn:
        row = conn.execute(
            sa.text(
                "UPDATE export_jobs SET attempt = attempt + 1, attempt_started_at = NULL,"
                " last_error = :error, lease_expires_at = now() + make_interval(secs => :hold)"
                " WHERE id = :id AND attempt = :attempt AND status IN ('SCHEDULED', 'IN_PROGRESS')"
                f" AND coalesce(lease_expires_at, created_at) < now() RETURNING {_COLUMNS}"
            ),
            {"id": job_id, "attempt": attempt, "error": error[:4000], "hold": float(hold_s)},
        ).one_or_none()
    return None if row is None else _job(row, job_id)


def give_up(engine: sa.Engine, job_id: uuid.UUID, attempt: int, error: str) -> Job | None:
    """A lost job on its last attempt ends ERROR (None if someone else acted first)."""
    with engine.begin() as conn:
        row = conn.execute(
            sa.text(
                "UPDATE export_jobs SET status = 'ERROR', error = :error, last_error = :error,"
                " finished_at = now(), lease_expires_at = NULL"
                " WHERE id = :id AND attempt = :attempt AND status IN ('SCHEDULED', 'IN_PROGRESS')"
                f" AND coalesce(lease_expires_at, created_at) < now() RETURNING {_COLUMNS}"
            ),
            {"id": job_id, "attempt": attempt, "error": error[:4000]},
        ).one_or_none()
    return None if row is None else _job(row, job_id)


def live_attempts(engine: sa.Engine) -> set[tuple[uuid.UUID, int]]:
    """(job id, attempt) of every active job: their work files must stay."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT id, attempt FROM export_jobs WHERE status IN ('SCHEDULED', 'IN_PROGRESS')"
            )
        )
        return {(r[0], int(r[1])) for r in rows}


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
