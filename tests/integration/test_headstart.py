"""Head start (``tasks.headstart``, ``tasks.extract.open_ahead``): a run's query opened while
Prefect starts the run, against the real PostgreSQL and Prefect.

The snapshot opened ahead streams exactly what the pipeline would have streamed, is used only
for the very statements it ran, and never outlives its use: not taken in time, not fitting,
or with its slots taken, its query is cancelled and its session given back.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pyarrow as pa
import pytest
import sqlalchemy as sa
from prefect import tags

from core.settings import get_settings
from db import jobs
from db.engine import get_engine
from entities import get_entity
from flows.exports import export_vouchers
from query.plan import ExportPlan, parse_parameters, plan_export
from tasks import headstart
from tasks.extract import Limits, Opened, attempt_limits, open_ahead, open_extract
from tasks.limits import tenant_limit
from tests.helpers import stored_job

pytestmark = pytest.mark.usefixtures("exports")

CHUNK = 1 << 16


def _limits(name: str) -> Limits:
    return Limits(statement_timeout_s=600, lock_timeout_s=30, application_name=name)


def _plan(tenant: str = "demo", **parameters: object) -> ExportPlan:
    return plan_export(get_entity("voucher"), tenant, dict(parameters))


def _table(plan: ExportPlan, limits: Limits, opened: Opened | None = None) -> pa.Table:
    with open_extract(get_engine(), plan, CHUNK, limits, opened=opened) as extract:
        return pa.Table.from_batches(list(extract.batches))


def _sessions(pg: psycopg.Connection, name: str) -> list[str]:
    """States of the backends whose ``application_name`` is ``name``."""
    rows = pg.execute(
        "SELECT state FROM pg_stat_activity WHERE application_name = %s", (name,)
    ).fetchall()
    return [str(r[0]) for r in rows]


OPEN = ("active", "idle in transaction")
"""A session in its transaction: still in the COPY, or done with it (a small export fits in the
socket's buffers) and waiting for the rows to be read."""


def _gone(pg: psycopg.Connection, name: str, timeout_s: float = 10) -> bool:
    """Whether no backend of ``name`` runs a statement any more (an idle pooled one may stay)."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if all(state == "idle" for state in _sessions(pg, name)):
            return True
        time.sleep(0.05)
    return False


def test_a_snapshot_opened_ahead_streams_what_the_pipeline_would(
    pg: psycopg.Connection,
) -> None:
    plan = _plan(fields=["code", "value", "metadata", "created_at"], format="parquet")
    limits = _limits(f"ahead-{uuid.uuid4().hex[:8]}")
    expected = _table(plan, limits)

    opened = open_ahead(get_engine(), plan, limits, parallel_workers=1)
    assert _sessions(pg, limits.application_name)[0] in OPEN  # the COPY was sent
    assert opened.fits(get_engine(), plan, limits)
    got = _table(plan, limits, opened)

    assert got.num_rows == opened.total == expected.num_rows > 0
    assert got.equals(expected)
    assert _gone(pg, limits.application_name)


def test_it_fits_only_the_statements_and_session_it_was_opened_with() -> None:
    plan = _plan(fields=["code", "value"])
    limits = _limits(f"fits-{uuid.uuid4().hex[:8]}")
    opened = open_ahead(get_engine(), plan, limits)
    try:
        assert opened.fits(get_engine(), _plan(fields=["code", "value"]), limits)
        assert not opened.fits(get_engine(), _plan(fields=["code", "value", "campaign"]), limits)
        assert not opened.fits(get_engine(), _plan(fields=["code"]), limits)
        assert not opened.fits(get_engine(), _plan("acme", fields=["code", "value"]), limits)
        assert not opened.fits(
            get_engine(), _plan(fields=["code", "value"], order="-created_at"), limits
        )
        other_name = Limits(600, 30, "someone else")
        assert not opened.fits(get_engine(), plan, other_name)
        shorter = Limits(60, 30, limits.application_name)  # its query may not run longer
        assert not opened.fits(get_engine(), plan, shorter)
        assert not opened.fits(get_engine(), plan, Limits(600, 5, limits.application_name))
    finally:
        opened.close()


def test_closing_it_cancels_the_query_and_keeps_the_pool_usable(pg: psycopg.Connection) -> None:
    name = f"close-{uuid.uuid4().hex[:8]}"
    opened = open_ahead(get_engine(), _plan(), _limits(name))
    assert _sessions(pg, name)[0] in OPEN
    opened.close()
    assert _gone(pg, name)
    with get_engine().connect() as conn:  # the session went back to the pool in order
        assert conn.execute(sa.text("SELECT 1")).scalar_one() == 1


def test_a_snapshot_whose_session_was_terminated_does_not_fit(pg: psycopg.Connection) -> None:
    """An administrator (or a failover) ended the session while the run was starting: the
    pipeline opens its own instead of failing its attempt on a dead connection."""
    plan = _plan(fields=["code"])
    limits = _limits(f"killed-{uuid.uuid4().hex[:8]}")
    opened = open_ahead(get_engine(), plan, limits)
    pg.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
        (limits.application_name,),
    )
    time.sleep(0.2)  # the FATAL message and the end of the connection reach the client

    assert not opened.fits(get_engine(), plan, limits)
    opened.close()  # nothing left to cancel: no error either
    assert _table(plan, limits).num_rows > 0  # the pool hands out a live session instead


def _job(tenant: str = "demo", **parameters: object) -> jobs.Job:
    return stored_job(tenant, "API", dict(parameters))


def _pipeline_view(job: jobs.Job) -> tuple[ExportPlan, Limits]:
    """The plan and limits the pipeline builds for ``job`` (an in-process run: no anchor)."""
    settings = get_settings()
    entity = get_entity(job.exported_object)
    plan = plan_export(entity, job.tenant, parse_parameters(job.parameters))
    return plan, attempt_limits(job, settings, settings.run_timeout_s - 1)


def _settled(start: headstart.HeadStart, timeout_s: float = 30) -> str:
    end = time.monotonic() + timeout_s
    while start.state in ("checking", "opening") and time.monotonic() < end:
        time.sleep(0.02)
    return start.state


def test_a_head_start_not_taken_in_time_is_cancelled(pg: psycopg.Connection) -> None:
    job = _job(fields=["code"])
    start = headstart.HeadStart(job.id, None, ttl_s=0.5)
    start.start()
    assert _settled(start) == "ready"
    name = f"exportflow {job.id} attempt {job.attempt}"
    assert _sessions(pg, name)[0] in OPEN

    time.sleep(1.0)
    assert start.state == "closed"
    assert _gone(pg, name)
    plan, limits = _pipeline_view(job)
    assert start.take(get_engine(), plan, limits) is None  # the pipeline opens its own


def test_no_head_start_for_a_finished_job_or_a_run_whose_slot_is_taken() -> None:
    finished = _job(fields=["code"])
    jobs.cancel_job(get_engine(), finished.id)
    start = headstart.HeadStart(finished.id, None, ttl_s=5)
    start.start()
    assert _settled(start) == "off"

    from prefect import get_client
    from prefect.concurrency.sync import concurrency

    tenant = "acme"
    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(tenant_limit(tenant), 1)
    waiting = _job(tenant, fields=["code"])
    try:
        with concurrency(tenant_limit(tenant), occupy=1, strict=True):  # another run holds it
            start = headstart.HeadStart(waiting.id, None, ttl_s=5)
            start.start()
            assert _settled(start) == "off"  # it would wait for the slot: no query yet
    finally:
        jobs.cancel_job(get_engine(), waiting.id)
        with get_client(sync_client=True) as client:
            client.upsert_global_concurrency_limit_by_name(
                tenant_limit(tenant), get_settings().max_running_per_tenant
            )


@pytest.fixture
def started() -> Iterator[list[headstart.HeadStart]]:
    made: list[headstart.HeadStart] = []
    yield made
    headstart.discard()


def test_a_run_for_a_job_streams_its_head_start_byte_for_byte(
    started: list[headstart.HeadStart], pg: psycopg.Connection
) -> None:
    fields = ["code", "value", "metadata", "created_at"]
    plain = export_vouchers(tenant="demo", parameters={"fields": fields})

    job = _job(fields=fields)
    start = headstart.begin([jobs.job_tag(job.id)], None)
    assert start is not None
    started.append(start)
    assert _settled(start) == "ready"
    with tags(jobs.job_tag(job.id)):
        ahead = export_vouchers(tenant="demo", parameters={"fields": fields})

    assert start.state == "taken"
    assert ahead["id"] == str(job.id)
    assert ahead["total"] == plain["total"] > 0
    data = Path(ahead["result"]["location"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == plain["result"]["sha256"]
    assert _gone(pg, f"exportflow {job.id} attempt {job.attempt}")


def test_a_run_whose_head_start_does_not_fit_opens_its_own(
    started: list[headstart.HeadStart], pg: psycopg.Connection
) -> None:
    job = _job(fields=["code"])
    start = headstart.begin([jobs.job_tag(job.id)], None)
    assert start is not None
    assert _settled(start) == "ready"
    jobs_engine = get_engine()
    with jobs_engine.begin() as conn:  # the job's request changed after the head start read it
        conn.execute(
            sa.text("UPDATE export_jobs SET parameters = :p WHERE id = :id"),
            {"p": '{"fields": ["code", "value"]}', "id": job.id},
        )
    with tags(jobs.job_tag(job.id)):
        done = export_vouchers(tenant="demo", parameters=None)

    assert start.state == "taken"  # taken, found not to fit, closed
    assert [c["name"] for c in done["result"]["columns"]] == ["code", "value"]
    assert _gone(pg, f"exportflow {job.id} attempt {job.attempt}")
