"""Running an export's flow in a thread of the calling process (tests, development).

It satisfies ``api.launcher.Launcher``: the API is given one by whoever builds the app, so the
API itself never imports the flows (nor the writers and Great Expectations behind them).
"""

from __future__ import annotations

import logging
import threading
import uuid

from prefect import tags

from db.jobs import Job, attempt_tag, job_tag
from entities import Entity

log = logging.getLogger(__name__)


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
                    FLOWS[entity.name](tenant=job.tenant, parameters=job.parameters)
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
