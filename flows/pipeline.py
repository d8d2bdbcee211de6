"""The one export pipeline every per-entity flow runs.

plan the request -> open the job (the API's row, or a new one) -> wait SCHEDULED for a
tenant slot and a global slot (``tasks.limits``) -> claim it -> stream the rows
into a temp file (count, extract, validate, transform, write) -> store it under its final key
-> record the result and DONE. With ``parallelism`` other than 1, ``flows.parallel`` splits
the export into parts under one snapshot and assembles them into the same one object. Any
failure records ERROR with a message a user can act on, and no object is left under the final
key.

Every attempt works in its own folder under ``<home>/tmp`` (removed when it ends; the reaper
removes those of lost attempts), renews its lease as it streams (``heartbeat_s``) and writes
only while it still owns the job (``db.jobs`` fences each write by attempt number). A transient
failure (lost connection, server shutdown, serialization failure, S3 5xx) starts the next
attempt from the start after a backoff, up to ``max_attempts``; a time limit ends the job
EXPIRED; a cancelled or superseded attempt stops at its next renewal and the run ends Cancelled.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar, cast

from prefect import get_run_logger
from prefect.client.schemas.objects import State
from prefect.states import Cancelled
from prefect.utilities.annotations import quote

from core import memory
from core.errors import (
    AttemptSuperseded,
    ExportCancelled,
    ExportError,
    InvalidRequest,
    StopAttempt,
    TimedOut,
    TransientError,
)
from core.params import ExportParameters
from core.settings import get_settings
from db import jobs
from db.engine import get_engine
from db.errors import is_transient_db
from db.jobs import Job
from entities import Entity
from flows.hooks import SUPERSEDED
from flows.parallel import run_parallel
from query.plan import ExportPlan, parse_parameters, plan_export
from storage import Stored
from storage.blocks import storage_for_record
from storage.s3 import is_transient
from tasks import report
from tasks.events import export_finished
from tasks.jobs import claim_run_job, open_job
from tasks.limits import export_slots
from tasks.store import store_export_file
from tasks.write import Produced, write_export_file

T = TypeVar("T")


def _as_is(value: T) -> T:
    """``value``, marked for Prefect to hand to a task as it is (``quote``).

    Prefect walks every argument of a task call twice, field by field (for the run's inputs,
    then to resolve futures inside): the plan down to each field of its entity, the job and
    its parameters. Those hold no futures and no task results, so there is nothing to find.
    Not for what one task hands the next (the produced file): Prefect finds it is that task's
    result, and its run graph draws the edge between the two from it.
    """
    return cast(T, quote(value))


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


def retryable(exc: BaseException) -> bool:
    """Worth a new attempt: infrastructure trouble, never the request or the data."""
    if isinstance(exc, TransientError):
        return True
    if isinstance(exc, ExportError):
        return False
    return is_transient_db(exc) or is_transient(exc)


def run_export(
    entity: Entity,
    tenant: str,
    parameters: ExportParameters | dict[str, Any] | None = None,
) -> dict[str, Any] | State[Any]:
    """Run one export of ``entity`` and return its job as a dict (status DONE).

    A run launched for an existing job (the API's) takes tenant and parameters from that job
    row, which the API validated and stored; the arguments are then only for the UI's eyes.
    A run whose attempt was cancelled or superseded returns a Cancelled state.
    """
    logger = get_run_logger()
    recorded, rejected = _first_check(entity, tenant, parameters)
    try:
        job, attempt = open_job(entity, tenant, recorded, rejected)
    except StopAttempt as exc:
        logger.info("nothing to do: %s", exc.message)
        return _cancelled(exc.message)
    with export_slots(job, attempt):  # bounds: the job stays SCHEDULED until a slot is free
        try:
            job, scheduled = claim_run_job(job, attempt)
        except StopAttempt as exc:
            logger.info("nothing to do: %s", exc.message)
            return _cancelled(exc.message)
        return _attempts(entity, job, scheduled)


def _attempts(entity: Entity, job: Job, scheduled: datetime | None) -> dict[str, Any] | State[Any]:
    """Run attempts of a claimed job until one ends it (transient failures start the next)."""
    logger = get_run_logger()
    engine = get_engine()
    settings = get_settings()
    while True:
        try:
            return _attempt(entity, job, scheduled)
        except StopAttempt as exc:
            logger.warning("attempt %s stopped: %s", job.attempt, exc.message)
            if isinstance(exc, AttemptSuperseded):
                return _cancelled(exc.message, name=SUPERSEDED)
            return _cancelled(exc.message)
        except Exception as exc:
            message = error_message(exc)
            if retryable(exc) and job.attempt < settings.max_attempts:
                delay = settings.backoff_s(job.attempt + 1)
                logger.warning(
                    "attempt %s of export %s failed (%s); attempt %s in %.0f s",
                    job.attempt,
                    job.id,
                    message,
                    job.attempt + 1,
                    delay,
                )
                try:
                    job = jobs.retry_in_place(
                        engine,
                        job.id,
                        job.attempt,
                        f"attempt {job.attempt}: {message}",
                        hold_s=delay + settings.lease_s,
                    )
                except StopAttempt as stop:
                    return _cancelled(stop.message)  # cancelled while it failed
                time.sleep(delay)
                continue
            _record_failure(job, exc, message)
            raise


def _cancelled(message: str, name: str = "Cancelled") -> State[Any]:
    """The run ends Cancelled. If the API or the UI already asked Prefect to cancel it (the
    run is Cancelling), the final state is set here too: a run that stops by itself must not
    be left Cancelling for a runner that finds its process already gone."""
    from prefect import get_client
    from prefect.runtime import flow_run

    state: State[Any] = Cancelled(message=message, name=name)
    if flow_run.id:
        try:
            with get_client(sync_client=True) as client:
                run = client.read_flow_run(uuid.UUID(flow_run.id))
                if run.state is not None and run.state.name == "Cancelling":
                    client.set_flow_run_state(run.id, Cancelled(message=message), force=True)
        except Exception as exc:  # the engine still proposes the Cancelled state below
            get_run_logger().warning("could not record the cancellation in Prefect: %s", exc)
    return state


def _record_failure(job: Job, exc: BaseException, message: str) -> None:
    """ERROR (EXPIRED for a time limit) with the message, if this attempt still owns the job."""
    engine = get_engine()
    if retryable(exc):
        message = f"{message}; tried {job.attempt} times"
    get_run_logger().error("export %s failed: %s", job.id, message)
    report.publish_failure(job, message)
    try:
        if isinstance(exc, TimedOut):
            export_finished(jobs.expire_job(engine, job.id, job.attempt, message))
        else:
            export_finished(jobs.fail_job(engine, job.id, message, job.attempt))
    except ExportError as state_error:
        get_run_logger().warning("could not record failure: %s", state_error)


def _attempt(entity: Entity, job: Job, scheduled: datetime | None) -> dict[str, Any]:
    """One attempt from the start: stream, fence, store, finish."""
    logger = get_run_logger()
    engine = get_engine()
    settings = get_settings()
    deadline = time.monotonic() + settings.run_timeout_s
    stored: Stored | None = None
    workdir = Path(tempfile.mkdtemp(prefix=f"export-{job.id}-a{job.attempt}-", dir=_tmp_root()))
    try:
        plan: ExportPlan = plan_export(
            entity, job.tenant, parse_parameters(job.parameters), now=scheduled
        )
        parallel = None
        if plan.parallelism != 1:
            anchor = scheduled or datetime.now(UTC)  # parts resolve relative dates alike
            plan = plan_export(entity, job.tenant, parse_parameters(job.parameters), now=anchor)
            parallel = run_parallel(job, plan, workdir, anchor, deadline)
        if parallel is not None:
            produced, stored = parallel
        else:
            produced = write_export_file(_as_is(job), _as_is(plan), workdir, deadline)
            # Fence before publishing: a superseded or cancelled attempt stores nothing.
            jobs.heartbeat(engine, job.id, job.attempt, lease_s=settings.lease_s)
            storing = time.perf_counter()
            stored = store_export_file(_as_is(job), produced)  # a task's result: see _as_is
            produced.timings["store"] = time.perf_counter() - storing
        expires_at = datetime.now(UTC) + _ttl(plan, settings.result_ttl_days)
        done = jobs.finish_job(
            engine, job.id, job.attempt, _result(produced, stored, expires_at), expires_at
        )
        report.publish_result(done, produced.seconds)  # Prefect UI artifacts
        logger.info(
            "export %s DONE: %s rows -> %s (%s)",
            job.id,
            produced.row_count,
            stored.location,
            _costs(produced.timings),
        )
        export_finished(done)
        return done.as_dict()
    except BaseException as exc:
        # A cancelled job's file goes; a superseded attempt leaves the key to the new attempt.
        if stored is not None and (
            isinstance(exc, ExportCancelled) or not isinstance(exc, StopAttempt)
        ):
            _discard(stored)
        raise
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _ttl(plan: ExportPlan, ttl_days: int) -> timedelta:
    """The file's lifetime: the request's ``expires_in`` if shorter than the setting."""
    limit = timedelta(days=ttl_days)
    asked = plan.parameters.get("expires_in")
    return min(limit, timedelta(seconds=int(asked))) if asked else limit


def _costs(timings: dict[str, float]) -> str:
    """Where the run's time and memory went, for the log (and the benchmark that reads it)."""
    parts = [f"{name} {seconds:.3f} s" for name, seconds in timings.items()]
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
    root = get_settings().tmp_path
    root.mkdir(parents=True, exist_ok=True)
    return root
