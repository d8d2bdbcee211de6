"""The reaper: every export ends, whatever happened to the process running it.

One pass (``reap``) finds the active jobs whose lease ran out -- a worker lost mid-stream
(killed, machine gone, frozen past its lease) or a launched attempt no worker claimed -- and
either relaunches each as a new attempt (after a backoff, through its Prefect deployment with
the idempotency key of that attempt) or, after ``max_attempts``, ends it ERROR with a message
saying what was lost. The database decides races: of two reapers, one relaunches a job.
Then it removes the work folders of attempts that are no longer running and aborts the
unfinished multipart uploads they left.
"""

from __future__ import annotations

import logging
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from core.settings import Settings, get_settings
from db import jobs
from db.engine import get_engine
from db.jobs import Job, attempt_tag, idempotency_key, job_tag
from entities import get_entity
from storage.blocks import storage_from_settings
from storage.keys import job_key_prefix, parts_prefix

log = logging.getLogger(__name__)

Launch = Callable[[Job, float], uuid.UUID | None]
"""Start the run of a job's (new) attempt after ``delay`` seconds; returns the run id."""


@dataclass
class Reaped:
    """What one pass did."""

    relaunched: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    uploads_aborted: int = 0

    def lines(self) -> list[str]:
        return [*self.relaunched, *self.failed, *self.cancelled]


def lost_reason(job: Job, settings: Settings) -> str:
    """What happened to a job's attempt, in words a user can act on."""
    if not job.claimed:
        return (
            f"no worker started attempt {job.attempt} within {settings.launch_grace_s:g} s of"
            " its launch (is a worker running on the work pool?)"
        )
    if job.total is not None:
        return f"the worker was lost at {job.progress:,} of {job.total:,} rows"
    return "the worker was lost before it counted the rows"


def launch_deployment(job: Job, delay_s: float) -> uuid.UUID | None:
    """Run the entity's deployment for the job's current attempt (one run per attempt: the
    idempotency key is the job and attempt)."""
    from prefect.deployments import run_deployment

    entity = get_entity(job.exported_object)
    run = run_deployment(
        name=f"{entity.flow_name}/{entity.flow_name}",
        parameters={"tenant": job.tenant, "parameters": job.parameters},
        timeout=0,
        idempotency_key=idempotency_key(job.id, job.attempt),
        scheduled_time=datetime.now(UTC) + timedelta(seconds=delay_s),
        tags=[
            "exportflow",
            "reaper",
            f"entity:{entity.name}",
            f"tenant:{job.tenant}",
            job_tag(job.id),
            attempt_tag(job.attempt),
        ],
    )
    return uuid.UUID(str(run.id))  # type: ignore[union-attr]


def _run_state(run_id: uuid.UUID | None) -> str | None:
    """The Prefect state type of a flow run (None: unknown or no server)."""
    if run_id is None:
        return None
    try:
        from prefect import get_client

        with get_client(sync_client=True) as client:
            state = client.read_flow_run(run_id).state
        return None if state is None else str(state.type.value)
    except Exception:
        return None


def _mark_crashed(run_id: uuid.UUID | None, reason: str) -> None:
    """A lost attempt's run that Prefect still shows running is marked Crashed."""
    if run_id is None or _run_state(run_id) not in ("RUNNING", "PENDING", "SCHEDULED"):
        return
    try:
        from prefect import get_client
        from prefect.states import Crashed

        with get_client(sync_client=True) as client:
            client.set_flow_run_state(run_id, Crashed(message=reason), force=True)
    except Exception as exc:
        log.info("could not mark flow run %s crashed: %s", run_id, exc)


def reap(engine: sa.Engine, settings: Settings, launch: Launch = launch_deployment) -> Reaped:
    """Relaunch or fail every active job whose lease ran out; abort its dead uploads."""
    done = Reaped()
    storage = None
    for job in jobs.lost_jobs(engine):
        reason = lost_reason(job, settings)
        if job.claimed and _run_state(job.flow_run_id) in ("CANCELLED", "CANCELLING"):
            # cancelled in Prefect where no hook ran: the user's wish stands, no relaunch
            try:
                jobs.cancel_job(engine, job.id, "cancelled: the flow run was cancelled in Prefect")
                done.cancelled.append(f"{job.id} CANCELLED (its flow run was cancelled)")
            except jobs.JobStateError:
                pass
            continue
        if job.attempt >= settings.max_attempts:
            ended = jobs.give_up(
                engine, job.id, job.attempt, f"{reason}; tried {job.attempt} times"
            )
            if ended is None:
                continue  # another reaper, a heartbeat or a cancel came first
            done.failed.append(f"{job.id} ERROR: {ended.error}")
        else:
            delay = settings.backoff_s(job.attempt + 1)
            new = jobs.relaunch(
                engine,
                job.id,
                job.attempt,
                f"attempt {job.attempt}: {reason}",
                hold_s=delay + settings.launch_grace_s,
            )
            if new is None:
                continue
            try:
                run_id = launch(new, delay)
            except Exception as exc:  # the new attempt's launch deadline brings it back
                done.relaunched.append(f"{job.id} attempt {new.attempt}: launch failed: {exc}")
            else:
                done.relaunched.append(
                    f"{job.id} attempt {new.attempt} in {delay:g} s ({reason}; run {run_id})"
                )
        _mark_crashed(job.flow_run_id, f"export {job.id}: {reason}")
        try:
            storage = storage or storage_from_settings(settings)
            prefix = job_key_prefix(job.tenant, job.exported_object, job.id, job.created_at)
            done.uploads_aborted += storage.abort_uploads(prefix, datetime.now(UTC))
        except Exception as exc:
            log.warning("could not abort the uploads of export %s: %s", job.id, exc)
    return done


_WORKDIR_PREFIX = "export-"


def _workdir_attempt(path: Path) -> tuple[uuid.UUID, int] | None:
    """(job id, attempt) of a work folder ``export-<job id>-a<n>-<random>``."""
    name = path.name.removeprefix(_WORKDIR_PREFIX)
    try:
        job_id = uuid.UUID(name[:36])
        attempt = name[36:].split("-")[1]
        return job_id, int(attempt.removeprefix("a"))
    except (ValueError, IndexError):
        return None


def remove_orphaned_workdirs(engine: sa.Engine, settings: Settings) -> list[str]:
    """Remove the work folders of attempts that are not running any more (lost, superseded,
    finished); anything else under ``<home>/tmp`` older than the run timeout goes too."""
    root = settings.tmp_path
    if not root.is_dir():
        return []
    live = jobs.live_attempts(engine)
    too_old = time.time() - settings.run_timeout_s - settings.lease_s
    removed = []
    for path in sorted(root.iterdir()):
        owner = _workdir_attempt(path) if path.name.startswith(_WORKDIR_PREFIX) else None
        if owner in live:
            continue
        if owner is None and path.stat().st_mtime > too_old:
            continue
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path.name)
    return removed


def abort_stale_uploads(settings: Settings) -> int:
    """Abort multipart uploads no live attempt can still own (older than the run timeout)."""
    older_than = datetime.now(UTC) - timedelta(seconds=settings.run_timeout_s + settings.lease_s)
    return storage_from_settings(settings).abort_uploads("", older_than)


@task(name="reap-lost-exports", cache_policy=NO_CACHE)
def reap_lost_exports() -> list[str]:
    """Relaunch or fail the exports whose lease ran out."""
    done = reap(get_engine(), get_settings())
    logger = get_run_logger()
    for line in done.lines():
        logger.info("%s", line)
    return [
        *done.lines(),
        *([f"{done.uploads_aborted} uploads aborted"] * bool(done.uploads_aborted)),
    ]


@task(name="remove-orphaned-temp-files", cache_policy=NO_CACHE)
def remove_orphaned_temp_files() -> list[str]:
    """Remove work folders of attempts that no longer run."""
    removed = remove_orphaned_workdirs(get_engine(), get_settings())
    return [f"removed temp {name}" for name in removed]


@task(name="abort-stale-uploads", cache_policy=NO_CACHE)
def abort_old_uploads() -> list[str]:
    """Abort multipart uploads older than any attempt can run."""
    aborted = abort_stale_uploads(get_settings())
    return [f"aborted {aborted} stale multipart uploads"] if aborted else []


def remove_part_files(engine: sa.Engine, settings: Settings) -> list[str]:
    """Remove the part files of parallel exports that have ended (a coordinator that died
    before it cleaned up leaves them under ``{tenant}/tmp/parts/{job}``)."""
    with engine.connect() as conn:
        ended = conn.execute(
            sa.text(
                "SELECT DISTINCT j.id, j.tenant FROM export_parts p"
                " JOIN export_jobs j ON j.id = p.job_id"
                " WHERE j.status NOT IN ('SCHEDULED', 'IN_PROGRESS')"
            )
        ).all()
    storage = storage_from_settings(settings)
    removed: list[str] = []
    for job_id, tenant in ended:
        if storage.remove_prefix(parts_prefix(tenant, job_id)):
            removed.append(f"removed part files of export {job_id}")
        with engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM export_parts WHERE job_id = :id"), {"id": job_id})
    return removed


@task(name="remove-part-files", cache_policy=NO_CACHE)
def remove_stale_part_files() -> list[str]:
    """Remove part files and part rows of parallel exports that have ended."""
    return remove_part_files(get_engine(), get_settings())
