"""Job rows -> export objects (the one place that decides what a client sees of a job)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from fastapi import Request

from api import tokens
from api.schemas import PUBLIC_STATUS, ExportObject, ExportResult
from entities import get_entity
from exportflow.errors import ExportError
from exportflow.request import plan_export
from exportflow.settings import Settings
from tasks import jobs
from tasks.jobs import Job


def base_url(request: Request, settings: Settings) -> str:
    return (settings.public_url or str(request.base_url)).rstrip("/")


def download_url(engine: sa.Engine, base: str, job: Job) -> str:
    return f"{base}/v1/exports/{job.id}/download?token={tokens.download_token(engine, job.id)}"


def shown_parameters(job: Job) -> dict[str, Any]:
    """The job's parameters; those that never passed validation are set apart.

    A failed run from the Prefect UI or the CLI stores what it was given, which may hold a
    bad field or sort key; Voucherify's SDK models reject those values, so they are returned
    under ``rejected`` (which the SDKs ignore) rather than in ``fields``/``order``.
    """
    if job.status != "ERROR":
        return job.parameters
    try:
        plan_export(get_entity(job.exported_object), job.tenant, job.parameters)
    except ExportError:
        return {"rejected": job.parameters}
    return job.parameters


def export_object(engine: sa.Engine, base: str, job: Job) -> ExportObject:
    result = None
    if job.status == "DONE" and job.result:
        if job.channel != "API":  # runs from the Prefect UI / schedules get their token here
            jobs.issue_download_token_hash(engine, job.id, tokens.token_hash(engine, job.id))
        r = job.result
        result = ExportResult(
            url=download_url(engine, base, job),
            content_type=r.get("content_type"),
            bytes=r.get("bytes"),
            row_count=r.get("row_count"),
            sha256=r.get("sha256"),
            expires_at=r.get("expires_at"),
        )
    return ExportObject(
        id=str(job.id),
        created_at=job.created_at,
        status=PUBLIC_STATUS[job.status],
        state=job.status,
        channel=job.channel,
        exported_object=job.exported_object,
        parameters=shown_parameters(job),
        result=result,
        total=job.total,
        processed=job.progress,
        error=job.error,
        started_at=job.started_at,
        finished_at=job.finished_at,
        expires_at=job.expires_at,
    )
