"""Removing export files by their record: expiry and the two erasures.

Each file is found through the job's recorded location (``storage_for_record``), never a key
rebuilt from today's settings, and a file counts as removed only when the storage verified it
is gone. The job row then says why (EXPIRED with the reason, or deleted with its requester),
and every removal is an audit event. Used by the maintenance tasks (``tasks.retention``), the
API and the CLI, so it sits below all three.

Which exports "can contain" a customer's data is read from the entity declarations: an
entity that can be filtered by ``customer_ids`` (customers themselves, and every entity with a
``customer_id``) can; the others (products, skus, points expirations, voucher transactions)
hold no customer field and are kept.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from core.errors import NotFound
from core.settings import Settings
from db import audit, jobs
from db.jobs import Job
from entities import ENTITIES
from storage.base import Stored
from storage.blocks import storage_for_record

MAINTENANCE = audit.Origin("maintenance", "system", "MAINTENANCE")
"""The actor of scheduled expiry."""


def customer_data_objects() -> list[str]:
    """Exported objects whose rows can hold a customer's data (from their declarations)."""
    return sorted(n for n, e in ENTITIES.items() if "customer_ids" in e.filter_aliases)


@dataclass
class Removal:
    """What happened to one export."""

    export_id: str
    exported_object: str
    status: str
    """The job's status before the removal."""
    location: str | None
    file_removed: bool
    """True when a file was there and is now verified gone."""
    error: str | None = None


@dataclass
class Report:
    """What a removal run did: per export, and the totals."""

    action: str
    at: str
    removals: list[Removal] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> list[Removal]:
        return [r for r in self.removals if r.error]

    def as_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "at": self.at,
            **self.details,
            "exports": len(self.removals),
            "files_removed": sum(r.file_removed for r in self.removals),
            "failed": len(self.failed),
            "removed": [asdict(r) for r in self.removals],
        }


def remove_file(job: Job, settings: Settings) -> tuple[bool, str | None, str | None]:
    """Delete the job's recorded file: (was there and is gone, location, error)."""
    result = job.result or {}
    if not result.get("location") or result.get("deleted_at"):
        return False, result.get("location"), None
    stored = Stored.from_result(result)
    try:
        existed = storage_for_record(stored, settings).delete(stored)
    except Exception as exc:  # reported; the job keeps its file record for the next run
        return False, stored.location, f"{type(exc).__name__}: {str(exc)[:300]}"
    return existed, stored.location, None


def expire_due(engine: sa.Engine, settings: Settings, now: datetime | None = None) -> Report:
    """DONE exports past ``expires_at`` (and EXPIRED ones whose file is still there): delete
    the file, set EXPIRED with the reason. Running it again finds nothing more to do."""
    now = now or datetime.now(UTC)
    report = Report("expire", now.isoformat())
    for job in jobs.due_for_expiry(engine, now):
        removed, location, error = remove_file(job, settings)
        report.removals.append(
            Removal(str(job.id), job.exported_object, job.status, location, removed, error)
        )
        if error:
            continue
        jobs.mark_expired(engine, job.id, f"expired: the file passed its expiry ({job.expires_at})")
        audit.record(
            engine,
            "expire",
            job.tenant,
            MAINTENANCE,
            job.id,
            {"location": location, "file_removed": removed},
        )
    return report


def erase_requester(
    engine: sa.Engine,
    settings: Settings,
    tenant: str,
    requester: str,
    origin: audit.Origin,
    cancel: Callable[[Job], None] | None = None,
) -> Report:
    """Delete every export ``requester`` (an API key id or user) created for ``tenant``: the
    running ones are cancelled first, every file removed, every job row deleted."""
    report = Report("erase", datetime.now(UTC).isoformat(), details={"requester": requester})
    for job in jobs.jobs_of_requester(engine, tenant, requester):
        before = job.status
        if job.status in ("SCHEDULED", "IN_PROGRESS"):
            try:
                job = jobs.cancel_job(engine, job.id, f"cancelled: erasure of {requester}")
                if cancel is not None:
                    cancel(job)
            except (jobs.JobStateError, NotFound):
                job = jobs.get_job(engine, job.id)
        removed, location, error = remove_file(job, settings)
        report.removals.append(
            Removal(str(job.id), job.exported_object, before, location, removed, error)
        )
        if error:
            continue
        try:
            jobs.delete_job(engine, job.id, tenant)
        except (jobs.JobStateError, NotFound) as exc:
            report.removals[-1].error = str(exc)
            continue
        audit.record(
            engine,
            "erase",
            tenant,
            origin,
            job.id,
            {"kind": "requester", "requester": requester, "file_removed": removed},
        )
    audit.record(engine, "erase", tenant, origin, None, _summary(report, "requester"))
    return report


def erase_customer(
    engine: sa.Engine,
    settings: Settings,
    tenant: str,
    customer_id: str,
    origin: audit.Origin,
    now: datetime | None = None,
) -> Report:
    """Data-subject erasure: remove every file of ``tenant`` produced before now whose entity
    can contain ``customer_id``'s data, and mark those jobs EXPIRED with the reason.

    Exports still running from before the request are stopped the same way (their snapshot
    may hold the customer); their run then discards what it wrote. The job rows keep only the
    erasure id as the reason; the customer id is in the audit event.
    """
    now = now or datetime.now(UTC)
    erasure_id = str(uuid.uuid4())
    objects = customer_data_objects()
    report = Report(
        "erase",
        now.isoformat(),
        details={"erasure_id": erasure_id, "customer_id": customer_id, "objects": objects},
    )
    reason = f"erased: data-subject erasure request {erasure_id} at {now.isoformat()}"
    for job in jobs.jobs_holding_data(engine, tenant, objects, now):
        removed, location, error = remove_file(job, settings)
        report.removals.append(
            Removal(str(job.id), job.exported_object, job.status, location, removed, error)
        )
        if error:
            continue
        jobs.mark_expired(engine, job.id, reason)
        audit.record(
            engine,
            "erase",
            tenant,
            origin,
            job.id,
            {"kind": "customer", "erasure_id": erasure_id, "file_removed": removed},
        )
    audit.record(engine, "erase", tenant, origin, None, _summary(report, "customer"))
    return report


def _summary(report: Report, kind: str) -> dict[str, Any]:
    out = report.as_dict()
    out.pop("removed")
    return {"kind": kind, **out, "export_ids": [r.export_id for r in report.removals]}
