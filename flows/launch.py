"""Running flows in the calling process: ``run_here`` (the CLI, ``make demo``, tests) and
``ThreadLauncher``, an export's flow in a thread (tests, development).

``ThreadLauncher`` satisfies ``api.launcher.Launcher``: the API is given one by whoever builds
the app, so the API itself never imports the flows (nor the writers and Great Expectations
behind them).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from prefect import tags

from core import tls
from db.jobs import Job, attempt_tag, job_tag
from entities import Entity

log = logging.getLogger(__name__)

R = TypeVar("R")


@contextlib.contextmanager
def without_heartbeats() -> Iterator[None]:
    """Flow runs started inside send no Prefect flow-run heartbeats: the worker's forked runs
    (``deployments.worker.run_engine``) and the runs of this process (``run_here``).

    Their thread sleeps in whole seconds and the engine joins it when a run ends, so every run
    lived up to 1 s past its final state: a forked run held its worker slot that long (a burst
    of twenty 10-row exports: 29.8-40.7 s with them, 24.2-25.9 s without), an in-process one
    returned that late (0.38 s per 10-row export on average, sampled in the test suite). What
    they would tell an automation is covered: the worker reports the death of a run it
    started (Crashed), and the reaper (``tasks.reaper``) marks the run of any lost export
    Crashed. The setting cannot be unset by an environment variable (``PREFECT_FLOWS_
    HEARTBEAT_FREQUENCY`` must be an int), hence a Prefect settings context: the current
    settings with that one value changed. They are copied, not validated again as Prefect's
    ``temporary_settings`` does (its ``copy_with_update`` reads every settings source anew:
    ~85 ms of each forked run's CPU on two cores)."""
    import prefect.context

    context = prefect.context.get_settings_context()
    flows = context.settings.flows.model_copy(update={"heartbeat_frequency": None})
    settings = context.settings.model_copy(update={"flows": flows})
    with prefect.context.SettingsContext(profile=context.profile, settings=settings):
        yield


def run_here(flow: Callable[..., R], /, **parameters: Any) -> R:
    """Run ``flow`` in this process as the worker's runs go: ``without_heartbeats``, and with
    one TLS context for Prefect's API clients (``core.tls``)."""
    tls.share_prefects()
    with without_heartbeats():
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
