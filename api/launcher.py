"""Launchers start the Prefect flow run of an export the API created.

``DeploymentLauncher`` (production): ``run_deployment(..., timeout=0)`` on the Prefect server,
a worker runs it; the idempotency key is per job attempt, so a retried POST never starts a
second run. ``ThreadLauncher`` (tests, dev without a server): the entity's flow in a thread
of the API process; it imports the flows (and Great Expectations) on first use only.
"""

from __future__ import annotations

import logging
import threading
import uuid
from typing import Any, Protocol

from entities import Entity
from tasks.jobs import Job

log = logging.getLogger(__name__)


def flow_parameters(job: Job) -> dict[str, Any]:
    """The run's parameters: the job id (authoritative) plus the request for the UI's eyes."""
    return {"tenant": job.tenant, "job_id": str(job.id), **job.parameters}


class Launcher(Protocol):
    def launch(self, entity: Entity, job: Job) -> uuid.UUID | None:
        """Start the run of ``job``; returns the flow run id when known."""

    def cancel(self, job: Job) -> None:
        """Best effort: stop the job's flow run (the job row is cancelled by the caller)."""


class DeploymentLauncher:
    """Trigger the entity's deployment (``<flow name>/<deployment>``) on the Prefect server."""

    def __init__(self, deployment: str | None = None) -> None:
        self.deployment = deployment

    def launch(self, entity: Entity, job: Job) -> uuid.UUID | None:
        from prefect.deployments import run_deployment

        name = f"{entity.flow_name}/{self.deployment or entity.flow_name}"
        run: Any = run_deployment(
            name=name,
            parameters=flow_parameters(job),
            timeout=0,
            idempotency_key=f"export-{job.id}-1",
            tags=["exportflow", "api"],
        )
        return uuid.UUID(str(run.id))  # sync context: a FlowRun, not a coroutine

    def cancel(self, job: Job) -> None:
        if job.flow_run_id is None:
            return
        from prefect import get_client
        from prefect.states import Cancelling

        try:
            with get_client(sync_client=True) as client:
                client.set_flow_run_state(job.flow_run_id, Cancelling(), force=True)
        except Exception as exc:  # the job row is already CANCELLED; the run will notice
            log.warning("could not cancel flow run %s: %s", job.flow_run_id, exc)


class ThreadLauncher:
    """Run the flow in a daemon thread of this process."""

    def __init__(self) -> None:
        self.threads: list[threading.Thread] = []

    def launch(self, entity: Entity, job: Job) -> uuid.UUID | None:
        def run() -> None:
            from flows.exports import FLOWS

            try:
                FLOWS[entity.name](tenant=job.tenant, job_id=job.id)
            except Exception as exc:  # recorded on the job by the pipeline
                log.info("export %s failed: %s", job.id, exc)

        thread = threading.Thread(target=run, name=f"export-{job.id}", daemon=True)
        self.threads.append(thread)
        thread.start()
        return None

    def cancel(self, job: Job) -> None:
        """The pipeline notices the CANCELLED row when it tries to finish."""

    def join(self, timeout: float | None = None) -> None:
        for thread in list(self.threads):
            thread.join(timeout)


def default_launcher(kind: str) -> Launcher:
    return ThreadLauncher() if kind == "thread" else DeploymentLauncher()
