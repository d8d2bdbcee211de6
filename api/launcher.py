"""Launchers start the Prefect flow run of an export the API created.

``DeploymentLauncher`` (production): creates a flow run of the entity's deployment on the
Prefect server, to start now (``run_deployment(..., timeout=0)`` without its read of the
deployment before every run), a worker runs it; the idempotency key is per job attempt, so a
retried POST never starts a second run. The run carries the job id as a tag
(``db.jobs.job_tag``). Tests and development without a server use
``flows.launch.ThreadLauncher`` (the API never imports flows itself).
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
import uuid
from collections.abc import Iterable
from typing import Any, Protocol

from core import nudge, tls
from core.warmup import complete_models
from db.jobs import Job, attempt_tag, idempotency_key, job_tag
from entities import Entity

log = logging.getLogger(__name__)


def flow_parameters(job: Job) -> dict[str, Any]:
    """The run's parameters as the form shows them (the job row stays authoritative)."""
    return {"tenant": job.tenant, "parameters": job.parameters}


def run_tags(entity: Entity, job: Job) -> list[str]:
    return [
        "exportflow",
        "api",
        f"entity:{entity.name}",
        f"tenant:{job.tenant}",
        job_tag(job.id),
        attempt_tag(job.attempt),
    ]


class Launcher(Protocol):
    def launch(self, entity: Entity, job: Job) -> uuid.UUID | None:
        """Start the run of ``job``; returns the flow run id when known."""

    def cancel(self, job: Job) -> None:
        """Best effort: stop the job's flow run (the job row is cancelled by the caller)."""


_LAUNCHES = threading.BoundedSemaphore(2)
"""At most two flow-run creations at once per API process: a burst of POSTs otherwise queues
on the Prefect server's database lock (SQLite) and every one of them waits."""

LAUNCH_PATIENCE_S = 30.0
"""How long a POST keeps asking a busy Prefect server (503 after the client's own retries) to
create its run before the export fails with "try again later"."""


def _status(exc: BaseException) -> int | None:
    """The HTTP status of Prefect's answer that ``exc`` reports, if it reports one."""
    status = getattr(getattr(exc, "response", None), "status_code", None)
    return status if isinstance(status, int) else None


def _busy(exc: BaseException) -> bool:
    """Prefect answered 503 (its SQLite store was locked) even after the client's retries."""
    return _status(exc) == 503


def _gone(exc: BaseException) -> bool:
    """Prefect answered 404: no such object. Reading one by name raises ``ObjectNotFound``;
    creating a run of a deleted deployment raises a ``PrefectHTTPStatusError`` with 404."""
    from prefect.exceptions import ObjectNotFound

    return isinstance(exc, ObjectNotFound) or _status(exc) == 404


class DeploymentLauncher:
    """Trigger the entity's deployment (``<flow name>/<deployment>``) on the Prefect server."""

    def __init__(self, deployment: str | None = None) -> None:
        self.deployment = deployment
        self._ids: dict[str, uuid.UUID] = {}
        """Deployment ids by name, read once (``run_deployment`` reads one before every run)."""
        # Import Prefect's client now, at app start (~1 s on two cores), not in the first
        # POST: the first export after start-up is then as quick as the others. Its clients
        # share one TLS context (one per launch otherwise: 20-90 ms of each POST).
        import prefect.exceptions
        import prefect.states  # noqa: F401

        tls.share_prefects()
        complete_models()  # the client's schemas, built now rather than in the first POST

    def name(self, entity: Entity) -> str:
        """The entity's deployment, as ``<flow name>/<deployment name>``."""
        return f"{entity.flow_name}/{self.deployment or entity.flow_name}"

    def read_ids(self, entities: Iterable[Entity]) -> None:
        """Read the deployment ids of ``entities`` now (the API's start-up does, in a thread)
        rather than in each entity's first POST (a request to the Prefect server, 15-25 ms of
        that POST). A deployment not there yet is read at its first launch, as before; a
        server that does not answer ends the reading (the launches will say so)."""
        from prefect import get_client
        from prefect.exceptions import ObjectNotFound

        try:
            with get_client(sync_client=True) as client:
                for entity in entities:
                    name = self.name(entity)
                    if name not in self._ids:
                        with contextlib.suppress(ObjectNotFound):
                            self._ids.setdefault(name, client.read_deployment_by_name(name).id)
        except Exception as exc:
            log.info("deployments not read at start (%s); each is read at its first launch", exc)

    def launch(self, entity: Entity, job: Job) -> uuid.UUID | None:
        name = self.name(entity)
        deadline = time.monotonic() + LAUNCH_PATIENCE_S
        while True:
            try:
                with _LAUNCHES:
                    run_id = self._create_run(name, entity, job)
                nudge.send()  # a worker here polls now, not at its next poll
                return run_id
            except Exception as exc:
                if not _busy(exc) or time.monotonic() >= deadline:
                    raise
                log.info("Prefect is busy; asking again to start export %s", job.id)
                time.sleep(random.uniform(0.5, 2.0))

    def _create_run(self, name: str, entity: Entity, job: Job) -> uuid.UUID:
        """Create the job attempt's flow run of deployment ``name``, to start now: what
        ``run_deployment(name, timeout=0)`` does outside a flow, without reading the
        deployment (its parameter schema and all: ~0.1-0.2 s of the server's time on two
        busy cores) before every run. The id is read once per name, and again if the
        deployment is gone (a re-created one has a new id)."""
        from prefect import get_client
        from prefect.states import Scheduled

        with get_client(sync_client=True) as client:
            for reread in (False, True):
                if reread or name not in self._ids:
                    self._ids[name] = client.read_deployment_by_name(name).id
                    reread = True  # a fresh id: a 404 now is final
                try:
                    run = client.create_flow_run_from_deployment(
                        self._ids[name],
                        parameters=flow_parameters(job),
                        state=Scheduled(),
                        tags=run_tags(entity, job),
                        # the same key on every try: a run Prefect did create is returned
                        idempotency_key=idempotency_key(job.id, job.attempt),
                    )
                except Exception as exc:
                    if reread or not _gone(exc):
                        raise
                    log.info("deployment %s is gone; reading its id again", name)
                else:
                    return uuid.UUID(str(run.id))
        raise AssertionError("unreachable: the second pass returns or raises")

    def cancel(self, job: Job) -> None:
        """Ask Prefect to cancel the run (its worker stops the process; the run also stops
        itself at its next chunk). A run that already ended (crashed, say) is left alone: a
        Cancelling state there would never be resolved."""
        if job.flow_run_id is None:
            return
        from prefect import get_client
        from prefect.states import Cancelling

        try:
            with get_client(sync_client=True) as client:
                run = client.read_flow_run(job.flow_run_id)
                if run.state is None or not run.state.is_final():
                    client.set_flow_run_state(
                        job.flow_run_id, Cancelling(message="export cancelled"), force=True
                    )
        except Exception as exc:  # the job row is already CANCELLED; the run will notice
            log.warning("could not cancel flow run %s: %s", job.flow_run_id, exc)
