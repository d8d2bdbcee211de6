"""The one export pipeline every per-entity flow runs.

job row (created, or the one the API made) -> validate the request -> stream the rows into a
temp file (count, extract, validate, transform, write) -> store it under its final key ->
record the result and DONE. Any failure records ERROR with a message a user can act on,
and no object is left under the final key.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from db.engine import get_engine
from entities import Entity
from exportflow.errors import ExportError, TransientError
from exportflow.request import ExportPlan, plan_export
from exportflow.settings import get_settings
from tasks import jobs, store
from tasks.jobs import Channel, Job
from tasks.write import Produced, Throttle, write_file


def _channel() -> tuple[Channel, uuid.UUID | None, datetime | None]:
    """Who started this run: a schedule, a deployment run (Prefect UI/API), or the CLI."""
    from prefect.runtime import deployment, flow_run

    run_id = flow_run.id
    scheduled = flow_run.scheduled_start_time
    if not deployment.id:
        return "CLI", uuid.UUID(run_id) if run_id else None, None
    auto = False
    try:
        from prefect import get_client

        with get_client(sync_client=True) as client:
            auto = bool(client.read_flow_run(uuid.UUID(run_id)).auto_scheduled)
    except Exception:  # the channel is informative; never fail an export over it
        auto = False
    when = scheduled.astimezone(UTC) if scheduled else None
    return ("SCHEDULE" if auto else "PREFECT_UI"), uuid.UUID(run_id), when


@task(name="start-job", cache_policy=NO_CACHE)
def start_job(
    entity: Entity, tenant: str, parameters: dict[str, Any], job_id: uuid.UUID | None
) -> tuple[Job, datetime | None]:
    """Claim the job the API created (``job_id``) or create one for this run, IN_PROGRESS."""
    engine = get_engine()
    channel, run_id, scheduled = _channel()
    if job_id is None:
        job = jobs.create_job(
            engine,
            tenant=tenant,
            exported_object=entity.name,
            format=str(parameters.get("format") or "csv"),
            channel=channel,
            parameters=parameters,
        )
    else:
        job = jobs.get_job(engine, job_id)
    return jobs.claim_job(engine, job.id, run_id), scheduled


@task(name="write-export-file", cache_policy=NO_CACHE)
def write_export_file(job: Job, plan: ExportPlan, workdir: Path, validate: bool) -> Produced:
    """Stream the rows of ``plan`` into a temp file, recording total and progress on the job."""
    logger = get_run_logger()
    settings = get_settings()
    engine = get_engine()

    def total(n: int) -> None:
        jobs.record_total(engine, job.id, n)
        logger.info("%s export %s: %s rows to write", plan.entity.name, job.id, n)

    progress = Throttle(
        lambda n: jobs.record_progress(engine, job.id, n), settings.progress_every_s
    )
    produced = write_file(
        engine,
        plan,
        workdir / f"export-{job.id}",
        chunk_bytes=settings.chunk_bytes,
        validate=validate,
        on_total=total,
        on_progress=progress,
        statement_timeout_s=settings.statement_timeout_s,
        export_id=str(job.id),
    )
    progress.flush()
    logger.info(
        "wrote %s rows, %s bytes, sha256 %s", produced.row_count, produced.bytes, produced.sha256
    )
    return produced


def _transient_only(task: Any, task_run: Any, state: Any) -> bool:
    try:
        state.result()
    except TransientError:
        return True
    except Exception:
        return False
    return False


@task(
    name="store-export-file",
    cache_policy=NO_CACHE,
    retries=3,
    retry_delay_seconds=[2, 10, 30],
    retry_condition_fn=_transient_only,
)
def store_export_file(job: Job, produced: Produced) -> store.Stored:
    """Publish the file under ``{tenant}/exports/{yyyy}/{mm}/{object}-{id}.{ext}``."""
    key = store.object_key(
        job.tenant, job.exported_object, job.id, produced.extension, job.created_at
    )
    stored = store.put_file(store.storage_block(), produced.path, key)
    get_run_logger().info("stored %s", stored.location)
    return stored


def _result(produced: Produced, stored: store.Stored, expires_at: datetime) -> dict[str, Any]:
    return {
        "url": stored.location,
        "storage": stored.storage,
        "key": stored.key,
        "location": stored.location,
        "content_type": produced.content_type,
        "bytes": produced.bytes,
        "row_count": produced.row_count,
        "sha256": produced.sha256,
        "columns": produced.columns,
        "expires_at": expires_at.isoformat(),
        **produced.extra,
    }


def error_message(exc: BaseException) -> str:
    if isinstance(exc, ExportError):
        return exc.message
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def run_export(
    entity: Entity,
    *,
    tenant: str,
    fields: list[str] | None = None,
    order: str | None = None,
    filters: dict[str, Any] | None = None,
    format: str = "csv",
    compression: str | None = None,
    partition_by: str | None = None,
    header: str | None = None,
    neutralize_formulas: bool | None = None,
    title: str | None = None,
    job_id: uuid.UUID | str | None = None,
    validate: bool = True,
) -> dict[str, Any]:
    """Run one export of ``entity`` and return its job as a dict (status DONE).

    With ``job_id`` (the API's path) the tenant and parameters come from that job row, which
    the API validated and stored; the other arguments are ignored.
    """
    logger = get_run_logger()
    engine = get_engine()
    parameters: dict[str, Any] = {
        "fields": fields,
        "order": order,
        "filters": filters,
        "format": format,
        "compression": compression,
        "partition_by": partition_by,
        "header": header,
        "neutralize_formulas": neutralize_formulas,
        "title": title,
    }
    parameters = {k: v for k, v in parameters.items() if v is not None}
    given = uuid.UUID(str(job_id)) if job_id else None
    job, scheduled = start_job(entity, tenant, parameters, given)
    if given is not None:
        tenant, parameters = job.tenant, job.parameters
    stored: store.Stored | None = None
    workdir = Path(tempfile.mkdtemp(prefix="export-", dir=_tmp_root()))
    try:
        store.check_tenant(tenant)
        plan = plan_export(entity, tenant, parameters, now=scheduled)
        produced = write_export_file(job, plan, workdir, validate)
        stored = store_export_file(job, produced)
        expires_at = datetime.now(UTC) + timedelta(days=get_settings().result_ttl_days)
        done = jobs.finish_job(engine, job.id, _result(produced, stored, expires_at), expires_at)
        logger.info("export %s DONE: %s rows -> %s", job.id, produced.row_count, stored.location)
        return done.as_dict()
    except BaseException as exc:
        message = error_message(exc)
        logger.error("export %s failed: %s", job.id, message)
        if stored is not None:
            _discard(stored)
        try:
            jobs.fail_job(engine, job.id, message)
        except ExportError as state_error:
            logger.warning("could not record failure: %s", state_error)
        raise
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _discard(stored: store.Stored) -> None:
    try:
        store.delete_object(store.storage_block(), stored.key)
    except Exception as exc:
        get_run_logger().warning("could not remove %s after failure: %s", stored.location, exc)


def _tmp_root() -> Path:
    root = get_settings().home / "tmp"
    root.mkdir(parents=True, exist_ok=True)
    return root
