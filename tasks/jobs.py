"""Prefect tasks around the job row: find or create this run's job, and claim it.

The job row is written only through ``db.jobs`` (the repository); these tasks decide which
row a run works on. A run launched for an existing job (by the API) carries the job id as a
run tag ``exportflow-job:<id>``; any other run (Prefect UI, schedule, CLI) creates its job,
recording who asked (the Prefect user or deployment, or the OS user of a CLI run) and an
audit event. Between ``open_job`` and ``claim_run_job`` the run waits for its concurrency
slots (``tasks.limits``) with the job still SCHEDULED.
"""

from __future__ import annotations

import getpass
import uuid
from datetime import UTC, datetime
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from core.errors import InvalidRequest
from core.status import Channel
from db import audit, jobs
from db.engine import get_engine
from db.jobs import Job, Requester, tagged_job_id
from entities import Entity


def run_context() -> tuple[Channel, uuid.UUID | None, datetime | None, uuid.UUID | None]:
    """(channel, flow run id, scheduled time, tagged job id) of the current flow run."""
    from prefect.runtime import deployment, flow_run

    run_id = uuid.UUID(flow_run.id) if flow_run.id else None
    job_id = tagged_job_id(list(flow_run.tags or []))
    if not deployment.id:
        return "CLI", run_id, None, job_id
    scheduled = flow_run.scheduled_start_time
    when = scheduled.astimezone(UTC) if scheduled else None
    auto = False
    try:
        from prefect import get_client

        with get_client(sync_client=True) as client:
            auto = bool(client.read_flow_run(run_id).auto_scheduled) if run_id else False
    except Exception:  # the channel is informative; never fail an export over it
        auto = False
    return ("SCHEDULE" if auto else "PREFECT_UI"), run_id, when, job_id


def run_requester(channel: Channel) -> Requester:
    """Who asked for this run: the Prefect user (where the server knows one) or deployment,
    else (a CLI or in-process run) the OS user."""
    from prefect.runtime import deployment, flow_run

    if channel == "CLI" or not deployment.id:
        try:
            user = getpass.getuser()
        except Exception:  # no user name in this environment (containers without passwd)
            user = f"uid:{__import__('os').getuid()}"
        return Requester(user, "os_user")
    created_by = None
    try:
        from prefect import get_client

        with get_client(sync_client=True) as client:
            run = client.read_flow_run(uuid.UUID(flow_run.id))
            created_by = run.created_by
    except Exception:  # informative only; never fail an export over it
        created_by = None
    if created_by is not None and created_by.display_value:
        return Requester(f"{created_by.type or 'user'}:{created_by.display_value}"[:200], "prefect")
    return Requester(f"deployment:{flow_run.flow_name}/{deployment.name}"[:200], "prefect")


@task(name="open-job", cache_policy=NO_CACHE)
def open_job(
    entity: Entity,
    tenant: str,
    parameters: dict[str, Any],
    rejected: InvalidRequest | None,
) -> Job:
    """The job this run was launched for, or a new SCHEDULED one recording who asked.

    A request that failed validation (``rejected``) is still recorded, as an ERROR job whose
    parameters sit under ``rejected``, so the job list tells the truth about every run.
    """
    engine = get_engine()
    channel, _, _, job_id = run_context()
    if job_id is not None:
        return jobs.get_job(engine, job_id)
    requester = run_requester(channel)
    job = jobs.create_job(
        engine,
        tenant=tenant,
        exported_object=entity.name,
        format=str(parameters.get("format") or "csv"),
        channel=channel,
        parameters={"rejected": parameters} if rejected else parameters,
        requester=requester,
    )
    audit.record(
        engine,
        "create",
        job.tenant,
        audit.Origin(requester.id, requester.kind, channel),
        job.id,
        {"exported_object": entity.name, "format": job.format},
    )
    if rejected is not None:
        jobs.fail_job(engine, job.id, rejected.message)
        raise rejected
    return job


@task(name="claim-job", cache_policy=NO_CACHE)
def claim_run_job(job: Job) -> tuple[Job, datetime | None]:
    """SCHEDULED -> IN_PROGRESS for this flow run; returns the job and the run's scheduled
    time (the anchor of relative dates)."""
    _, run_id, scheduled, _ = run_context()
    return jobs.claim_job(get_engine(), job.id, run_id), scheduled
