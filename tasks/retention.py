"""Retention as Prefect tasks: expire finished exports, purge old rows.

Plain functions (``expire``, ``purge``) do the work and return a report dict; the ``@task``
wrappers are what the maintenance flow runs. Both are idempotent: a second run right after
the first finds nothing to do.

* ``expire``: DONE exports past ``expires_at`` lose their file (local or S3, through the
  job's recorded location) and become EXPIRED; an EXPIRED job whose file is still there
  (expired by hand, or a delete that failed last time) gets its file removed too.
* ``purge``: finished job rows older than ``job_retention_days`` (whose file is gone),
  ``Idempotency-Key`` replays older than ``idempotency_ttl_s``, closed rate-limit windows,
  audit events older than ``audit_retention_days``.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from core.settings import Settings, get_settings
from db import audit, jobs, retention
from db.engine import get_engine
from storage.removal import expire_due
from tasks.events import emit_export_event


def expire(settings: Settings | None = None, now: datetime | None = None) -> dict[str, Any]:
    """Expire what is due; returns the report (exports, files_removed, failed, removed)."""
    return expire_due(get_engine(), settings or get_settings(), now).as_dict()


def purge(settings: Settings | None = None, now: datetime | None = None) -> dict[str, Any]:
    """Purge rows past their retention; returns how many of each were deleted."""
    settings = settings or get_settings()
    now = now or datetime.now(UTC)
    engine = get_engine()
    return {
        "action": "purge",
        "at": now.isoformat(),
        "jobs": jobs.purge_jobs(engine, now - timedelta(days=settings.job_retention_days)),
        "idempotency_keys": retention.purge_idempotency_keys(
            engine, now - timedelta(seconds=settings.idempotency_ttl_s)
        ),
        "rate_limit_windows": retention.purge_rate_limit_windows(
            engine, now - timedelta(seconds=settings.rate_limit_window_s)
        ),
        "audit_events": audit.purge(engine, now - timedelta(days=settings.audit_retention_days)),
    }


@task(name="expire-exports", cache_policy=NO_CACHE)
def expire_exports() -> dict[str, Any]:
    """Delete the files of expired exports and mark them EXPIRED."""
    report = expire()
    engine = get_engine()
    for removal in report["removed"]:
        if removal["error"] is None:  # Prefect event for automations (webhooks: the trigger)
            with contextlib.suppress(Exception):
                emit_export_event(jobs.get_job(engine, removal["export_id"]), "expired")
    get_run_logger().info(
        "expired %s exports (%s files removed, %s failed)",
        report["exports"],
        report["files_removed"],
        report["failed"],
    )
    return report


@task(name="purge-records", cache_policy=NO_CACHE)
def purge_records() -> dict[str, Any]:
    """Delete job rows, idempotency keys, rate-limit windows and audit events past retention."""
    report = purge()
    get_run_logger().info("purged %s", {k: v for k, v in report.items() if isinstance(v, int)})
    return report
