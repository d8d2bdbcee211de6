"""Job rows -> export objects (the one place that decides what a client sees of a job).

Rendering only reads: the download link is a freshly signed token, nothing is written.
"""

from __future__ import annotations

import sqlalchemy as sa
from fastapi import Request

from api import tokens
from api.schemas import ExportObject, ExportResult, QualityReport, QueueInfo
from core.settings import Settings
from core.status import PUBLIC_STATUS
from db import jobs
from db.jobs import Job


def base_url(request: Request, settings: Settings) -> str:
    return (settings.public_url or str(request.base_url)).rstrip("/")


def download_url(engine: sa.Engine, base: str, job: Job, settings: Settings) -> str:
    return tokens.download_url(engine, base, job.id, settings, job.expires_at)


def queue_info(engine: sa.Engine, job: Job, settings: Settings) -> QueueInfo:
    """Where a SCHEDULED export stands: its place in the tenant's queue and what it waits for
    (the counts behind the Prefect concurrency limits that hold it back)."""
    tenant_running, total_running = jobs.running_counts(engine, job.tenant)
    tenant_limit, total_limit = settings.max_running_per_tenant, settings.max_running_total
    if tenant_running >= tenant_limit:
        reason = f"tenant limit: {tenant_running} of this tenant's exports are running"
        reason += f" (at most {tenant_limit})"
    elif total_running >= total_limit:
        reason = f"global limit: {total_running} exports are running (at most {total_limit})"
    else:
        reason = "waiting for a worker to start it"
    return QueueInfo(
        position=jobs.queue_position(engine, job),
        reason=reason,
        running_for_tenant=tenant_running,
        tenant_limit=tenant_limit,
        running_total=total_running,
        total_limit=total_limit,
    )


def export_object(engine: sa.Engine, base: str, job: Job, settings: Settings) -> ExportObject:
    result = None
    if job.status == "DONE" and job.result:
        r = job.result
        result = ExportResult(
            url=download_url(engine, base, job, settings),
            content_type=r.get("content_type"),
            bytes=r.get("bytes"),
            row_count=r.get("row_count"),
            sha256=r.get("sha256"),
            expires_at=r.get("expires_at"),
            quality=QualityReport.model_validate(r["quality"]) if r.get("quality") else None,
        )
    return ExportObject(
        id=str(job.id),
        created_at=job.created_at,
        status=PUBLIC_STATUS[job.status],
        state=job.status,
        channel=job.channel,
        exported_object=job.exported_object,
        parameters=job.parameters,
        result=result,
        total=job.total,
        processed=job.progress,
        error=job.error,
        started_at=job.started_at,
        finished_at=job.finished_at,
        expires_at=job.expires_at,
        queue=queue_info(engine, job, settings) if job.status == "SCHEDULED" else None,
        requested_by=job.requested_by,
    )
