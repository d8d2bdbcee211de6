"""Bounds: a tenant's K+1th export waits SCHEDULED (GET says why and where) and then runs,
whatever the channel; the limits are Prefect global concurrency limits."""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

import httpx
import psycopg
import pytest

from tests.integration.test_api import create, wait_finished


@pytest.fixture
def client(api_url: str) -> httpx.Client:
    with httpx.Client(base_url=api_url, timeout=60) as c:
        yield c


def test_a_tenants_k_plus_first_export_waits_scheduled_then_runs(
    client: httpx.Client,
    api_keys: dict[str, dict[str, str]],
    engine: Any,
    pg: psycopg.Connection,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from prefect import get_client
    from prefect.concurrency.sync import concurrency

    from core.settings import Settings, get_settings
    from db import jobs
    from flows.exports import FLOWS
    from tasks.limits import GLOBAL_LIMIT, ensure_limits, tenant_limit

    defaults = Settings.model_fields
    assert defaults["max_running_per_tenant"].default == 2  # defaults for a 2-core box
    assert defaults["max_running_total"].default == 4
    monkeypatch.setenv("EXPORTFLOW_MAX_RUNNING_PER_TENANT", "2")
    # the global limit well above the leases that killed runs of other tests leave behind
    # on the test server (it reclaims no expired lease)
    monkeypatch.setenv("EXPORTFLOW_MAX_RUNNING_TOTAL", "100")
    get_settings.cache_clear()
    (started,) = pg.execute("SELECT now()").fetchone()
    settings = get_settings()
    k = settings.max_running_per_tenant
    with get_client(sync_client=True) as prefect:
        # start from fresh limits: the test server never reclaims the leased slots of runs
        # that other tests killed (a real server's lease service does)
        for name in (tenant_limit("acme"), tenant_limit("demo"), GLOBAL_LIMIT):
            with contextlib.suppress(Exception):
                prefect.delete_global_concurrency_limit_by_name(name)
    ensure_limits(settings, ["acme", "demo"])
    with get_client(sync_client=True) as prefect:
        assert prefect.read_global_concurrency_limit_by_name(tenant_limit("acme")).limit == k
        assert prefect.read_global_concurrency_limit_by_name(GLOBAL_LIMIT).limit == 100

    # K exports of acme "running": rows IN_PROGRESS holding the tenant's K Prefect slots
    running = [
        jobs.create_job(
            engine,
            tenant="acme",
            exported_object="voucher",
            format="csv",
            channel="CLI",
            parameters={},
        )
        for _ in range(k)
    ]
    for job in running:
        jobs.claim_job(engine, job.id, None)
    release = threading.Event()
    held = threading.Event()

    def hold_slots() -> None:
        with concurrency(tenant_limit("acme"), occupy=k, strict=True):
            held.set()
            release.wait(300)

    holder = threading.Thread(target=hold_slots, daemon=True)
    holder.start()
    assert held.wait(120)
    try:
        waiting = create(client, api_keys["acme"], parameters={"fields": ["code"], "order": "-id"})
        export_id = waiting.json()["id"]
        # another channel (a CLI / in-process flow run) waits the same way
        cli = threading.Thread(
            target=lambda: FLOWS["order"](tenant="acme", parameters={"fields": ["id"]}),
            daemon=True,
        )
        cli.start()
        time.sleep(5)  # long enough for both runs to ask Prefect for their slot
        shown = client.get(f"/v1/exports/{export_id}", headers=api_keys["acme"]).json()
        assert shown["status"] == "SCHEDULED", shown
        assert shown["queue"]["position"] == 1
        assert shown["queue"]["reason"].startswith("tenant limit")
        assert shown["queue"]["running_for_tenant"] == k == shown["queue"]["tenant_limit"]
        cli_rows = pg.execute(
            "SELECT status FROM export_jobs WHERE tenant = 'acme' AND exported_object = 'order'"
            " AND channel = 'CLI' AND created_at > %s",
            (started,),
        ).fetchall()
        assert cli_rows == [("SCHEDULED",)]
        # the demo tenant is not held back by acme's limit
        other = create(client, api_keys["demo"], parameters={"fields": ["code"], "order": "id"})
        assert wait_finished(client, other.json()["id"], api_keys["demo"])["status"] == "DONE"
    finally:
        for job in running:
            jobs.fail_job(engine, job.id, "test: released")
        release.set()
        holder.join(60)
    done = wait_finished(client, export_id, api_keys["acme"])
    assert done["status"] == "DONE" and done["queue"] is None
    cli.join(300)
    assert pg.execute(
        "SELECT status FROM export_jobs WHERE tenant = 'acme' AND exported_object = 'order'"
        " AND channel = 'CLI' AND created_at > %s",
        (started,),
    ).fetchall() == [("DONE",)]


def test_a_head_starts_read_of_its_jobs_limits_serves_that_jobs_ensure_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The limits the head start read for a job are not read again when that job's run
    ensures them (if they are at the settings' sizes and fresh); any other ensure reads."""
    import uuid

    from prefect import get_client
    from prefect.client.orchestration import SyncPrefectClient

    from core.settings import Settings
    from tasks import limits

    tenant = f"reads-{uuid.uuid4().hex[:8]}"
    names = [limits.tenant_limit(tenant), limits.GLOBAL_LIMIT]
    settings = Settings(max_running_per_tenant=3, max_running_total=100)
    limits.ensure_limits(settings, [tenant])
    reads: list[str] = []
    original = SyncPrefectClient.read_global_concurrency_limit_by_name

    def counted(self: SyncPrefectClient, name: str) -> Any:
        reads.append(name)
        return original(self, name)

    monkeypatch.setattr(SyncPrefectClient, "read_global_concurrency_limit_by_name", counted)
    job, other = uuid.uuid4(), uuid.uuid4()

    found = limits.read_limits(names, job)
    assert [found[n].limit for n in names] == [3, 100]
    assert len(reads) == 2
    limits.ensure_limits(settings, [tenant], other)  # another job's ensure reads
    limits.ensure_limits(settings, [tenant])  # and so does one for no job
    assert len(reads) == 6
    limits.ensure_limits(settings, [tenant], job)  # the job's own: its read stands
    assert len(reads) == 6
    limits.ensure_limits(settings, [tenant], job)  # once only
    assert len(reads) == 8

    limits.read_limits(names, job)  # the settings changed since the read: ensured anew
    limits.ensure_limits(Settings(max_running_per_tenant=5, max_running_total=100), [tenant], job)
    assert len(reads) == 11  # the tenant's limit only
    with get_client(sync_client=True) as client:
        assert client.read_global_concurrency_limit_by_name(names[0]).limit == 5

    monkeypatch.setattr(limits, "READ_FRESH_S", 0.0)  # a read too old to stand in
    limits.read_limits(names, job)
    before = len(reads)
    limits.ensure_limits(Settings(max_running_per_tenant=5, max_running_total=100), [tenant], job)
    assert len(reads) == before + 2
    with get_client(sync_client=True) as client:
        client.delete_global_concurrency_limit_by_name(names[0])
