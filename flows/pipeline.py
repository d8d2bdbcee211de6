"""The one export pipeline every per-entity flow runs.

plan the request -> start the job (claim the API's row, or create one) -> stream the rows
into a temp file (count, extract, validate, transform, write) -> store it under its final key
-> record the result and DONE. Any failure records ERROR with a message a user can act on,
and no object is left under the final key.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from prefect import get_run_logger

from core import memory
from core.errors import ExportError, InvalidRequest
from core.params import ExportParameters
from core.settings import get_settings
from db import jobs
from db.engine import get_engine
from entities import Entity
from query.plan import ExportPlan, parse_parameters, plan_export
from storage import Stored
from storage.blocks import storage_for_record
from tasks.jobs import start_job
from tasks.store import store_export_file
from tasks.write import Produced, write_export_file


def _result(produced: Produced, stored: Stored, expires_at: datetime) -> dict[str, Any]:
    return {
        "url": stored.location,
        **stored.as_dict(),
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


def _first_check(
    entity: Entity, tenant: str, parameters: ExportParameters | dict[str, Any] | None
) -> tuple[dict[str, Any], InvalidRequest | None]:
    """The parameters to record on a new job, and the reason they are refused (if they are).

    Relative dates are checked again against the run's scheduled time once the job is claimed.
    """
    try:
        return plan_export(entity, tenant, parameters).parameters, None
    except InvalidRequest as exc:
        if isinstance(parameters, ExportParameters):
            raw = parameters.stored()
        else:
            raw = parameters if isinstance(parameters, dict) else {"given": repr(parameters)}
        return raw, exc


def run_export(
    entity: Entity,
    tenant: str,
    parameters: ExportParameters | dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run one export of ``entity`` and return its job as a dict (status DONE).

    A run launched for an existing job (the API's) takes tenant and parameters from that job
    row, which the API validated and stored; the arguments are then only for the UI's eyes.
    """
    logger = get_run_logger()
    engine = get_engine()
    settings = get_settings()
    recorded, rejected = _first_check(entity, tenant, parameters)
    job, scheduled = start_job(entity, tenant, recorded, rejected)
    stored: Stored | None = None
    workdir = Path(tempfile.mkdtemp(prefix=f"export-{job.id}-", dir=_tmp_root()))
    try:
        plan: ExportPlan = plan_export(
            entity, job.tenant, parse_parameters(job.parameters), now=scheduled
        )
        produced = write_export_file(job, plan, workdir)
        storing = time.perf_counter()
        stored = store_export_file(job, produced)
        expires_at = datetime.now(UTC) + timedelta(days=settings.result_ttl_days)
        done = jobs.finish_job(engine, job.id, _result(produced, stored, expires_at), expires_at)
        logger.info(
            "export %s DONE: %s rows -> %s (%s)",
            job.id,
            produced.row_count,
            stored.location,
            _costs(produced.timings, time.perf_counter() - storing),
        )
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


def _costs(timings: dict[str, float], store_s: float) -> str:
    """Where the run's time and memory went, for the log (and the benchmark that reads it)."""
    parts = [f"{name} {seconds:.3f} s" for name, seconds in timings.items()]
    parts.append(f"store {store_s:.3f} s")
    peak, private = memory.peak_rss_mb(), memory.private_mb()
    if peak is not None:
        parts.append(f"peak RSS {peak:.0f} MB")
    if private is not None:
        parts.append(f"private {private:.0f} MB")
    return ", ".join(parts)


def _discard(stored: Stored) -> None:
    try:
        storage_for_record(stored, get_settings()).delete(stored)
    except Exception as exc:
        get_run_logger().warning("could not remove %s after failure: %s", stored.location, exc)


def _tmp_root() -> Path:
    root = get_settings().home / "tmp"
    root.mkdir(parents=True, exist_ok=True)
    return root
