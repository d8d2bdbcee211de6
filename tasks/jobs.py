"""The steps around the job row: find or create this run's job, and claim its attempt.

The job row is written only through ``db.jobs`` (the repository); these steps decide which row a
run works on. They are plain steps of the flow, not Prefect tasks: each is one or two
statements, and a task run costs Prefect's server three state events to record (with the two as
tasks, a 1M-row export's run cost that server 0.94-1.55 s of CPU against 0.77-1.02 s without,
and PENDING -> job claimed took 1.18-1.87 s against 0.71-1.0 s; ``make serve``, alternating
within one serve on two cores). The flow's log says what they did. A run launched for an
existing job (by the API or the reaper) carries the job id as a run tag ``exportflow-job:<id>``
(and the attempt, ``exportflow-attempt:<n>``); any other run (Prefect UI, schedule, CLI) creates
its job, recording who asked (the Prefect user or deployment, or the OS user of a CLI run) and
an audit event. Between ``open_job`` and ``claim_run_job`` the run waits for its concurrency
slots (``tasks.limits``) with the job still SCHEDULED.

Re-running a run from the Prefect UI whose job has finished (DONE, ERROR, EXPIRED, CANCELLED)
starts a fresh job with the same tenant and parameters (``retry_of`` names the old one): a
finished job never goes back, and the old file stays valid until it expires.
"""

from __future__ import annotations

import getpass
import os
import uuid
from datetime import UTC, datetime
from typing import Any

from prefect import get_run_logger

from core.errors import InvalidRequest, StopAttempt
from core.settings import get_settings
from core.status import ACTIVE, Channel
from db import audit, jobs
from db.engine import get_engine
from db.jobs import Job, Requester, tagged_attempt, tagged_job_id
from entities import Entity
from tasks.events import export_finished
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
    return ("SCHEDULE" if _auto_scheduled(run_id) else "PREFECT_UI"), run_id, when, job_id


def _auto_scheduled(run_id: uuid.UUID | None) -> bool:
    """Whether Prefect's scheduler made this run: from the run the engine already read (no
    API call), else from the API."""
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    if context is not None and context.flow_run is not None and context.flow_run.id == run_id:
        return bool(context.flow_run.auto_scheduled)
    try:
        from prefect import get_client

        with get_client(sync_client=True) as client:
            return bool(client.read_flow_run(run_id).auto_scheduled) if run_id else False
    except Exception:  # the channel is informative; never fail an export over it
        return False


def run_requester(channel: Channel) -> Requester:
    """Who asked for this run: the Prefect user (where the server knows one) or deployment,
    else (a CLI or in-process run) the OS user."""
    from prefect.runtime import deployment, flow_run

    if channel == "CLI" or not deployment.id:
        try:
            user = getpass.getuser()
        except Exception:  # no user name in this environment (containers without passwd)
            user = f"uid:{os.getuid()}"
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


def _run_count() -> int:
    from prefect.runtime import flow_run

    return int(flow_run.run_count or 1)


def open_job(
    entity: Entity,
    tenant: str,
    parameters: dict[str, Any],
    rejected: InvalidRequest | None,
) -> tuple[Job, int | None]:
    """The job (and attempt) this run was launched for, or a new SCHEDULED job for it,
    recording who asked.

    A request that failed validation (``rejected``) is still recorded, as an ERROR job whose
    parameters sit under ``rejected``, so the job list tells the truth about every run.
    A run launched for a job that has since ended (cancelled while it waited) stops with
    ``StopAttempt``; a re-run of a finished job's run starts a fresh job.
    """
    from prefect.runtime import flow_run

    engine = get_engine()
    settings = get_settings()
    channel, run_id, _, job_id = run_context()
    attempt = tagged_attempt(list(flow_run.tags or []))
    retry_of: uuid.UUID | None = None
    if job_id is not None:
        job = jobs.get_job(engine, job_id)
        if job.status in ACTIVE:
            get_run_logger().info(
                "export %s: the %s job this run was launched for (%s)",
                job.id,
                job.status,
                f"attempt {attempt}" if attempt else "its current attempt",
            )
            return job, attempt
        if _run_count() <= 1:
            raise StopAttempt(f"export {job.id} is already {job.status}; nothing to do")
        get_run_logger().info(
            "export %s is %s: this re-run starts a fresh export of the same request",
            job.id,
            job.status,
        )
        retry_of, tenant, parameters, rejected = job.id, job.tenant, job.parameters, None
        if "rejected" in parameters:
            parameters = parameters["rejected"]
    requester = run_requester(channel)
    job = jobs.create_job(
        engine,
        tenant=tenant,
        exported_object=entity.name,
        format=str(parameters.get("format") or "csv"),
        channel=channel,
        parameters={"rejected": parameters} if rejected else parameters,
        retry_of=retry_of,
        launch_grace_s=settings.launch_grace_s,
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
    tag_flow_run(run_id, job, channel)  # the API tags the runs it launches itself
    get_run_logger().info(
        "export %s: a new %s job of %s for %s (%s)",
        job.id,
        job.status,
        entity.name,
        job.tenant,
        channel,
    )
    if rejected is not None:
        export_finished(jobs.fail_job(engine, job.id, rejected.message))
        raise rejected
    return job, None


def claim_run_job(job: Job, attempt: int | None) -> tuple[Job, datetime | None]:
    """SCHEDULED -> IN_PROGRESS (attempt ``attempt``, or the job's current one) for this flow
    run, with a lease; returns the job and the run's scheduled time (the anchor of relative
    dates)."""
    _, run_id, scheduled, _ = run_context()
    claimed = jobs.claim_job(
        get_engine(), job.id, run_id, attempt=attempt, lease_s=get_settings().lease_s
    )
    get_run_logger().info("export %s: claimed, attempt %s", claimed.id, claimed.attempt)
    return claimed, scheduled
