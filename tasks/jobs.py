"""Prefect tasks around the job row: find or create this run's job, and claim it.

The job row is written only through ``db.jobs`` (the repository); these tasks decide which
row a run works on. A run launched for an existing job (by the API) carries the job id as a
run tag ``exportflow-job:<id>``; any other run (Prefect UI, schedule, CLI) creates its job.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from core.errors import InvalidRequest
from core.status import Channel
from db import jobs
from db.engine import get_engine
from db.jobs import Job, tagged_job_id
from entities import Entity
from tasks.report import tag_flow_run


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


@task(name="start-job", cache_policy=NO_CACHE)
def start_job(
    entity: Entity,
    tenant: str,
    parameters: dict[str, Any],
    rejected: InvalidRequest | None,
) -> tuple[Job, datetime | None]:
    """Claim the job this run was launched for, or create and claim one for it.

    A request that failed validation (``rejected``) is still recorded, as an ERROR job whose
    parameters sit under ``rejected``, so the job list tells the truth about every run.
    """
    engine = get_engine()
    channel, run_id, scheduled, job_id = run_context()
    if job_id is None:
        job = jobs.create_job(
            engine,
            tenant=tenant,
            exported_object=entity.name,
            format=str(parameters.get("format") or "csv"),
            channel=channel,
            parameters={"rejected": parameters} if rejected else parameters,
        )
        tag_flow_run(run_id, job, channel)  # the API tags the runs it launches itself
        if rejected is not None:
            jobs.fail_job(engine, job.id, rejected.message)
            raise rejected
        job_id = job.id
    return jobs.claim_job(engine, job_id, run_id), scheduled
