"""Bounds on running exports: Prefect global concurrency limits, for every channel.

Every export run holds one slot of ``exportflow-exports`` (``max_running_total``) and one of
``exportflow-tenant-<tenant>`` (``max_running_per_tenant``) from before it claims its job
until it ends; a run that cannot get both waits with its job still SCHEDULED. The limits are
created or updated from the settings lazily by each run and by ``make serve`` at start.
Slots are leases the Prefect server takes back if the process dies without releasing them.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from prefect import get_run_logger

from core.settings import Settings, get_settings
from db import jobs
from db.engine import get_engine
from db.jobs import Job

if TYPE_CHECKING:
    from prefect.client.schemas.responses import GlobalConcurrencyLimitResponse

GLOBAL_LIMIT = "exportflow-exports"
SLOT_LEASE_S = 60.0
"""Lease of a held slot (Prefect renews it while the run lives; its minimum is 60 s): a run
whose process died gives its slots back within about this long."""


def tenant_limit(tenant: str) -> str:
    """The name of a tenant's limit (tenant names are checked: letters, digits, ``_ . -``)."""
    return f"exportflow-tenant-{tenant}"


READ_FRESH_S = 2.0
"""How long a job's limits read by ``read_limits`` stand in for the read ``ensure_limits`` makes
for the same job. A forked run reads both of its limits for its head start
(``tasks.headstart``) ~0.3 s before it takes its slots; reading them again to ensure them was
two of the ~38 requests a 10-row export makes to the Prefect server, whose CPU bounds a
burst."""

_read: dict[tuple[uuid.UUID, str], tuple[int | None, float]] = {}
"""(job id, limit name) -> (the limit's size as ``read_limits`` found it for that job, ``None``
if it did not exist; ``time.monotonic()`` then). ``ensure_limits`` takes the job's entries out:
one read serves once."""


def read_limits(
    names: Iterable[str], job_id: uuid.UUID | None = None
) -> dict[str, GlobalConcurrencyLimitResponse | None]:
    """The named limits as the Prefect server has them now (``None``: not created); with
    ``job_id``, remembered for that job's ``ensure_limits``."""
    from prefect import get_client
    from prefect.exceptions import ObjectNotFound

    found: dict[str, GlobalConcurrencyLimitResponse | None] = {}
    with get_client(sync_client=True) as client:
        for name in names:
            try:
                limit = client.read_global_concurrency_limit_by_name(name)
            except ObjectNotFound:
                limit = None
            found[name] = limit
            if job_id is not None:
                _read[job_id, name] = (limit.limit if limit else None, time.monotonic())
    return found


def ensure_limits(
    settings: Settings, tenants: list[str] | tuple[str, ...] = (), job_id: uuid.UUID | None = None
) -> None:
    """Create or update the global limit and the given tenants' limits to the settings. A
    limit that ``read_limits`` found for ``job_id`` at its size less than ``READ_FRESH_S`` ago
    is not read again."""
    from prefect import get_client

    sizes = {GLOBAL_LIMIT: settings.max_running_total}
    sizes.update({tenant_limit(t): settings.max_running_per_tenant for t in tenants})
    now = time.monotonic()
    stale = {}
    for name, size in sizes.items():
        read = _read.pop((job_id, name), None) if job_id is not None else None
        if read is None or read[0] != size or now - read[1] >= READ_FRESH_S:
            stale[name] = size
    if not stale:
        return
    with get_client(sync_client=True) as client:
        for name, size in stale.items():
            client.upsert_global_concurrency_limit_by_name(name, size)


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
    ensure_limits(settings, [job.tenant], job.id)
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
