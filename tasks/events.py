"""Telling the outside world an export ended: Prefect events and the export's webhooks.

``emit_export_event(job, kind)`` emits ``exportflow.export.<kind>`` (done, failed, expired,
erased) on the resource ``exportflow.export.<job id>`` (labelled with tenant and entity),
related to the export's flow run, its tenant and its entity, so a Prefect automation can
match on any of them. ``export_finished(job)`` is what the pipeline calls at DONE and ERROR:
the event, then the job's webhook deliveries (enqueued by the database with the status),
sent at once. Both are best effort: the job row is already final, and the maintenance flow
retries whatever delivery is left with the task ``send_due_webhooks``.
"""

from __future__ import annotations

import logging
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.events import Event, emit_event

from core.events import EXPORT_EVENT_KIND_OF_STATUS, ExportEventKind
from core.settings import get_settings
from db.engine import get_engine
from db.jobs import Job
from webhooks import deliver_due

log = logging.getLogger(__name__)


def export_resource(job: Job) -> dict[str, str]:
    """The Prefect resource of an export: ``exportflow.export.<id>`` with its labels."""
    return {
        "prefect.resource.id": f"exportflow.export.{job.id}",
        "prefect.resource.name": f"{job.exported_object}-{job.tenant}-{str(job.id)[:8]}",
        "exportflow.tenant": job.tenant,
        "exportflow.entity": job.exported_object,
        "exportflow.channel": job.channel,
    }


def _related(job: Job) -> list[dict[str, str]]:
    related = [
        {
            "prefect.resource.id": f"exportflow.tenant.{job.tenant}",
            "prefect.resource.role": "tenant",
        },
        {
            "prefect.resource.id": f"exportflow.entity.{job.exported_object}",
            "prefect.resource.role": "entity",
        },
    ]
    if job.flow_run_id is not None:
        related.insert(
            0,
            {
                "prefect.resource.id": f"prefect.flow-run.{job.flow_run_id}",
                "prefect.resource.role": "flow-run",
            },
        )
    return related


def _payload(job: Job, details: dict[str, Any]) -> dict[str, Any]:
    result = job.result or {}
    payload: dict[str, Any] = {
        "status": job.status,
        "format": job.format,
        "row_count": result.get("row_count"),
        "bytes": result.get("bytes"),
        "sha256": result.get("sha256"),
        "error": job.error,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        "expires_at": job.expires_at.isoformat() if job.expires_at else None,
    }
    return {**{k: v for k, v in payload.items() if v is not None}, **details}


def emit_export_event(job: Job, kind: ExportEventKind, **details: Any) -> Event | None:
    """Emit ``exportflow.export.<kind>`` for ``job``; ``details`` join the payload.

    Returns the event (None when Prefect events are off). Never raises over a lost event.
    """
    try:
        return emit_event(
            f"exportflow.export.{kind}",
            resource=export_resource(job),
            related=_related(job),
            payload=_payload(job, details),
        )
    except Exception as exc:
        log.warning("could not emit exportflow.export.%s for %s: %s", kind, job.id, exc)
        return None


def export_finished(job: Job) -> None:
    """After the job's final status: its Prefect event, then its webhooks sent at once."""
    kind = EXPORT_EVENT_KIND_OF_STATUS.get(job.status)
    if kind is not None:
        emit_export_event(job, kind)
    try:
        deliver_due(get_engine(), get_settings(), export_id=job.id)
    except Exception as exc:  # the outbox keeps them; the maintenance flow retries
        log.warning("webhooks of export %s not sent now: %s", job.id, exc)


@task(name="send-webhooks", cache_policy=NO_CACHE)
def send_due_webhooks(limit: int = 500) -> list[str]:
    """The maintenance step: one attempt at each due webhook delivery (first tries, retries).

    Returns one line per attempt, as the ``maintain`` flow's steps do.
    """
    attempts = deliver_due(get_engine(), get_settings(), limit)
    return [
        f"webhook {a.delivery_id} delivered ({a.status})"
        if a.delivered
        else f"webhook {a.delivery_id} failed ({a.error}); "
        + ("given up" if a.retry_in_s is None else f"retry in {a.retry_in_s:.0f} s")
        for a in attempts
    ]
