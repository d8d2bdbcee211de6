"""A deployment run's export query starts while Prefect is still starting the run.

A flow run forked by the warm worker spends ~1 s in Prefect (proposing Pending and Running,
reading its deployment, taking its concurrency slots, claiming its job) before the pipeline
opens its snapshot; for a large export PostgreSQL then spends about as long scanning and
sorting before the first row. ``begin`` (called by ``deployments.worker`` in the forked child,
before the engine starts) does the database half now, on a thread: it reads the job the run
was launched for, plans it as the pipeline will (same parameters, same anchor for relative
dates), and -- only if the run's slots are free right now -- opens the snapshot, counts, reads
the metadata keys and sends the COPY (``tasks.extract.open_ahead``). No row is read: the server
sorts and then waits on its socket.

When the pipeline reaches its stream it calls ``take``, which hands the opened snapshot over
only if it ``fits`` (the very statements, session settings and deadline the pipeline would
use); otherwise, or when the job is not streamed by this run within ``AHEAD_TTL_S``, or the run
ends first (``discard``), the COPY is cancelled and the transaction ended. Nothing the head
start does is visible: it writes nothing, a failure of it is only logged at debug level, and
the pipeline then opens its own snapshot as it always did. The snapshot is taken when the
run's process starts instead of ~1 s later, when the job is claimed.

Only runs launched for a job (the API's, the reaper's: tagged ``exportflow-job:<id>``) and
whole exports (``parallelism`` 1) get a head start; ``EXPORTFLOW_HEAD_START=false`` turns it
off.
"""

from __future__ import annotations

import logging
import threading
import uuid
from datetime import datetime

import sqlalchemy as sa

from core.settings import get_settings
from core.status import ACTIVE
from db import jobs
from db.engine import get_engine
from entities import ENTITIES
from query.plan import ExportPlan, parse_parameters, plan_export
from tasks.extract import Limits, Opened, attempt_limits, open_ahead
from tasks.limits import GLOBAL_LIMIT, read_limits, tenant_limit

_log = logging.getLogger(__name__)

AHEAD_TTL_S = 30.0
"""How long an opened snapshot waits for its run's stream before it is cancelled (a run that
waits for a slot after all, or stops early, must not hold a snapshot open)."""


class HeadStart:
    """One run's head start: a thread that opens the snapshot, and the hand-over (``take``)."""

    def __init__(self, job_id: uuid.UUID, scheduled: datetime | None, ttl_s: float) -> None:
        self.job_id = job_id
        self.scheduled = scheduled
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._state = "checking"  # -> opening -> ready -> taken | closed; or -> off
        self._opened: Opened | None = None
        self._settled = threading.Event()  # opened, failed or given up: no longer "opening"
        self._taken = threading.Event()
        self._thread = threading.Thread(target=self._run, name="head-start", daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def state(self) -> str:
        return self._state

    def _run(self) -> None:
        opened: Opened | None = None
        try:
            found = self._plan_if_free()
            with self._lock:
                if self._state != "checking" or found is None:
                    self._state = "off"
                    return
                self._state = "opening"
            engine, plan, limits = found
            opened = open_ahead(engine, plan, limits, get_settings().head_start_parallel_workers)
        except Exception as exc:
            _log.debug("no head start for export %s: %s", self.job_id, exc)
        finally:
            with self._lock:
                if self._state == "opening":
                    self._state = "ready" if opened is not None else "off"
                    self._opened = opened
                    opened = None
            self._settled.set()
            if opened is not None:  # given up (``discard``) while it was opening
                opened.close()
        if self._state == "ready" and not self._taken.wait(self.ttl_s):
            self._close("not streamed within its time")

    def _plan_if_free(self) -> tuple[sa.Engine, ExportPlan, Limits] | None:
        """The job's plan and read limits (as the pipeline makes them, with the whole run
        timeout left), if the job is active, whole and its slots free."""
        settings = get_settings()
        engine = get_engine()
        job = jobs.get_job(engine, self.job_id)
        if job.status not in ACTIVE or job.exported_object not in ENTITIES:
            return None
        plan = plan_export(
            ENTITIES[job.exported_object],
            job.tenant,
            parse_parameters(job.parameters),
            now=self.scheduled,
        )
        if plan.parallelism != 1 or not _slots_free(job.tenant, job.id):
            return None
        return engine, plan, attempt_limits(job, settings, settings.run_timeout_s)

    def take(self, engine: sa.Engine, plan: ExportPlan, limits: Limits) -> Opened | None:
        """The opened snapshot if it fits ``plan`` under ``limits`` (waiting for it if it is
        being opened), else ``None`` (and it is closed)."""
        with self._lock:
            if self._state == "checking":  # not opening yet: too late to help
                self._state = "off"
                return None
        self._settled.wait()
        with self._lock:
            if self._state != "ready":
                return None
            opened, self._opened, self._state = self._opened, None, "taken"
            self._taken.set()
        assert opened is not None
        try:
            fits = opened.fits(engine, plan, limits)
        except Exception as exc:
            _log.debug("head start of export %s not comparable: %s", self.job_id, exc)
            fits = False
        if fits:
            return opened
        _log.debug("head start of export %s does not fit its plan; closed", self.job_id)
        opened.close()
        return None

    def _close(self, why: str) -> None:
        with self._lock:
            if self._state in ("checking", "opening"):
                self._state = "off"  # the thread closes what it opens
                return
            if self._state != "ready":
                return
            opened, self._opened, self._state = self._opened, None, "closed"
            self._taken.set()
        _log.debug("head start of export %s closed: %s", self.job_id, why)
        if opened is not None:
            opened.close()


def _slots_free(tenant: str, job_id: uuid.UUID) -> bool:
    """Whether the global limit and ``tenant``'s have a free slot now (a limit not created
    yet, or turned off, is free): a head start must not load the database for a run that
    will wait for a slot. What it reads serves the job's ``ensure_limits``."""
    found = read_limits([tenant_limit(tenant), GLOBAL_LIMIT], job_id)
    return not any(
        limit is not None and limit.active and limit.active_slots >= limit.limit
        for limit in found.values()
    )


_current: HeadStart | None = None
_current_lock = threading.Lock()


def begin(tags: list[str], scheduled: datetime | None) -> HeadStart | None:
    """Start the head start of the run tagged ``tags`` (scheduled at ``scheduled``, the anchor
    of relative dates), if it was launched for a job and head starts are on. Never raises: a
    run without its head start is only slower."""
    global _current
    try:
        job_id = jobs.tagged_job_id(tags)
        if job_id is None or not get_settings().head_start:
            return None
    except Exception as exc:
        _log.debug("no head start: %s", exc)
        return None
    started = HeadStart(job_id, scheduled, AHEAD_TTL_S)
    with _current_lock:
        previous, _current = _current, started
    if previous is not None:
        previous._close("replaced")
    started.start()
    return started


def take(engine: sa.Engine, plan: ExportPlan, limits: Limits) -> Opened | None:
    """The snapshot opened ahead for this process's run, if there is one and it fits."""
    global _current
    with _current_lock:
        current, _current = _current, None
    return current.take(engine, plan, limits) if current is not None else None


def discard() -> None:
    """Close the head start nobody took (the run ends)."""
    global _current
    with _current_lock:
        current, _current = _current, None
    if current is not None:
        current._close("the run ended")
