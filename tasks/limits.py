"""Bounds on running exports: Prefect global concurrency limits, for every channel.

Every export run holds one slot of ``exportflow-exports`` (``max_running_total``) and one of
``exportflow-tenant-<tenant>`` (``max_running_per_tenant``) from before it claims its job
until it ends; a run that cannot get both waits with its job still SCHEDULED. The limits are
created or updated from the settings lazily by each run and by ``make serve`` at start.
Slots are leases the Prefect server takes back if the process dies without releasing them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from prefect import get_run_logger

from core.settings import Settings, get_settings
from db import jobs
from db.engine import get_engine
from db.jobs import Job

GLOBAL_LIMIT = "exportflow-exports"
SLOT_LEASE_S = 60.0
"""Lease of a held slot (Prefect renews it while the run lives; its minimum is 60 s): a run
whose process died gives its slots back within about this long."""


def tenant_limit(tenant: str) -> str:
    """The name of a tenant's limit (tenant names are checked: letters, digits, ``_ . -``)."""
    return f"exportflow-tenant-{tenant}"


def ensure_limits(settings: Settings, tenants: list[str] | tuple[str, ...] = ()) -> None:
    """Create or update the global limit and the given tenants' limits to the settings."""
    from prefect import get_client

    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(GLOBAL_LIMIT, settings.max_running_total)
        for tenant in tenants:
            client.upsert_global_concurrency_limit_by_name(
                tenant_limit(tenant), settings.max_running_per_tenant
            )


class _KeepWaiting:
    """While a run waits for its slots, keep its SCHEDULED job's launch lease fresh, so the
    reaper does not take a queued export for a launch nobody claimed."""

    def __init__(self, job: Job, attempt: int | None, hold_s: float) -> None:
        self._stop = threading.Event()
        self._args = (job.id, attempt, hold_s)
        self._thread = threading.Thread(target=self._run, name=f"waiting-{job.id}", daemon=True)

    def _run(self) -> None:
        job_id, attempt, hold_s = self._args
        while not self._stop.wait(max(1.0, hold_s / 3)):
            try:
                jobs.hold_launch(get_engine(), job_id, attempt, hold_s)
            except Exception as exc:  # the reaper's grace still covers a missed renewal
                get_run_logger().warning("could not renew the waiting lease: %s", exc)

    def __enter__(self) -> None:
        self._thread.start()

    def __exit__(self, *exc: object) -> None:
        self._stop.set()


@contextmanager
def export_slots(job: Job, attempt: int | None = None) -> Iterator[None]:
    """Hold a tenant slot and a global slot for the duration of the block (waiting first,
    with the job SCHEDULED and its launch lease renewed)."""
    from prefect.concurrency.sync import concurrency

    settings = get_settings()
    ensure_limits(settings, [job.tenant])
    names = [tenant_limit(job.tenant), GLOBAL_LIMIT]
    get_run_logger().info(
        "export %s takes a slot of %s (at most %s running per tenant, %s overall)",
        job.id,
        names,
        settings.max_running_per_tenant,
        settings.max_running_total,
    )
    holding = False
    waiting = _KeepWaiting(job, attempt, settings.launch_grace_s)
    try:
        with (
            waiting,
            concurrency(names, occupy=1, strict=True, raise_on_lease_renewal_failure=False),
        ):
            waiting.__exit__()
            holding = True
            yield
    except Exception as exc:
        if not holding:  # never started: say so on the job instead of leaving it SCHEDULED
            message = f"could not get a concurrency slot from Prefect: {type(exc).__name__}"
            try:
                jobs.fail_job(get_engine(), job.id, message)
            except Exception as state_error:
                get_run_logger().warning("could not record failure: %s", state_error)
        raise
