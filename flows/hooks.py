"""Flow-run state hooks of the export flows: record on the job row at once what Prefect saw.

``on_crashed`` (the run's process died; the runner or worker runs the hook) ends the
attempt's lease now, so the next reaper pass relaunches or fails the job instead of waiting
for the lease to run out. ``on_cancellation`` (cancelled in Prefect) cancels the job. Both are
best effort: a machine that died runs no hook, and the lease covers that case.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from core.status import ACTIVE
from db import jobs
from db.engine import get_engine

log = logging.getLogger(__name__)

SUPERSEDED = "Superseded"
"""Name of the Cancelled state a run ends in when another attempt took its job over."""


def on_crashed(flow: Any, flow_run: Any, state: Any) -> None:
    """The run crashed: its attempt is lost now, not when the lease runs out."""
    reason = f"the flow run crashed ({getattr(state, 'message', None) or 'no message'})"
    try:
        job = jobs.end_lease_of_run(get_engine(), uuid.UUID(str(flow_run.id)), reason)
    except Exception as exc:  # the reaper still acts when the lease runs out
        log.warning("could not record the crash of flow run %s: %s", flow_run.id, exc)
        return
    if job is not None:
        log.info("export %s: attempt %s lost (%s)", job.id, job.attempt, reason)


def on_cancellation(flow: Any, flow_run: Any, state: Any) -> None:
    """The run was cancelled in Prefect: so is the export it was running (if it still is).

    A superseded attempt's run (state named ``Superseded``) leaves the job to the new attempt.
    """
    if getattr(state, "name", None) == SUPERSEDED:
        return
    engine = get_engine()
    run_id = uuid.UUID(str(flow_run.id))
    try:
        job = jobs.job_for_run(engine, run_id)
        if job is not None and job.flow_run_id == run_id and job.status in ACTIVE:
            jobs.cancel_job(engine, job.id, "cancelled: the flow run was cancelled in Prefect")
    except Exception as exc:  # finished meanwhile, deleted, or the database is away
        log.info("flow run %s cancelled; job not changed: %s", flow_run.id, exc)
