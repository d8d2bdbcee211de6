"""Job rows -> export objects (the one place that decides what a client sees of a job).

Rendering only reads: the download link is a freshly signed token, nothing is written.
"""

from __future__ import annotations

import sqlalchemy as sa
from fastapi import Request

from api import tokens
from api.schemas import ExportObject, ExportResult, QualityReport
from core.settings import Settings
from core.status import PUBLIC_STATUS
from db.jobs import Job


def base_url(request: Request, settings: Settings) -> str:
    return (settings.public_url or str(request.base_url)).rstrip("/")


def download_url(engine: sa.Engine, base: str, job: Job, settings: Settings) -> str:
    return tokens.download_url(engine, base, job.id, settings, job.expires_at)


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
    )
