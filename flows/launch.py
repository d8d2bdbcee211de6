"""Running flows in the calling process: ``run_here`` (the CLI, ``make demo``, tests) and
``ThreadLauncher``, an export's flow in a thread (tests, development).

``ThreadLauncher`` satisfies ``api.launcher.Launcher``: the API is given one by whoever builds
the app, so the API itself never imports the flows (nor the writers and Great Expectations
behind them).
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from prefect import tags

from core import tls
from db.jobs import Job, attempt_tag, job_tag
from entities import Entity

log = logging.getLogger(__name__)

R = TypeVar("R")


def run_here(flow: Callable[..., R], /, **parameters: Any) -> R:
    """Run ``flow`` in this process, as the warm worker's runs go: without Prefect's flow-run
    heartbeats. Their thread sleeps in whole seconds and the engine joins it when the run ends,
    so every run returned up to 1 s after its final state (0.38 s per 10-row export on
    average, traced in the test suite). A run of a lost export is marked Crashed by the reaper
    (``tasks.reaper``), which is what the heartbeats would have let an automation do.

    Prefect's API clients here share one TLS context (``core.tls``), as in the worker's runs."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    tls.share_prefects()
    with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        return flow(**parameters)


class ThreadLauncher:
    """Run the entity's flow in a daemon thread of this process."""

    def __init__(self) -> None:
        self.threads: list[threading.Thread] = []

    def launch(self, entity: Entity, job: Job) -> uuid.UUID | None:
        def run() -> None:
            from flows.exports import FLOWS

            try:
                with tags(
                    "exportflow",
                    f"entity:{entity.name}",
                    f"tenant:{job.tenant}",
                    job_tag(job.id),
                    attempt_tag(job.attempt),
                ):
                    run_here(FLOWS[entity.name], tenant=job.tenant, parameters=job.parameters)
            except Exception as exc:  # recorded on the job by the pipeline
                log.info("export %s failed: %s", job.id, exc)

        thread = threading.Thread(target=run, name=f"export-{job.id}", daemon=True)
        self.threads.append(thread)
        thread.start()
        return None

    def cancel(self, job: Job) -> None:
        """The pipeline notices the CANCELLED (or deleted) row at its next chunk and stops;
        its flow run ends Cancelled."""

    def join(self, timeout: float | None = None) -> None:
        for thread in list(self.threads):
            thread.join(timeout)
