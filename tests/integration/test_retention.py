"""Retention over the real API: expiry deletes files (local and S3) and answers 410, download
links expire and cannot be forged, old rows are purged, every step is in the audit trail."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest

from tests.integration.test_api import create, wait_finished


@pytest.fixture
def client(api_url: str) -> httpx.Client:
    with httpx.Client(base_url=api_url, timeout=60) as c:
        yield c


def _done(client: httpx.Client, headers: dict[str, str], **parameters: Any) -> dict[str, Any]:
    response = create(client, headers, parameters=parameters)
    assert response.status_code == 200, response.text
    export = wait_finished(client, response.json()["id"], headers)
    assert export["status"] == "DONE", export
    return export


def _row(pg: psycopg.Connection, export_id: str) -> dict[str, Any]:
    cur = pg.execute(
        "SELECT status, error, result, expires_at, requested_by, requester_kind"
        " FROM export_jobs WHERE id = %s",
        (export_id,),
    )
    names = [d.name for d in cur.description]
    return dict(zip(names, cur.fetchone(), strict=True))


def test_expires_in_shortens_the_ttl_and_expiry_deletes_the_local_file_idempotently(
    client: httpx.Client, api_keys: dict[str, dict[str, str]], pg: psycopg.Connection
) -> None:
    from tasks.retention import expire

    demo = api_keys["demo"]
    export = _done(client, demo, fields=["code"], order="-code", expires_in=3600)
    expires = datetime.fromisoformat(export["expires_at"])
    finished = datetime.fromisoformat(export["finished_at"])
    assert timedelta(minutes=59) < expires - finished <= timedelta(hours=1, seconds=5)
    row = _row(pg, export["id"])
    path = row["result"]["location"]
    assert row["requested_by"] == demo["X-App-Id"] and row["requester_kind"] == "api_key"
    url = export["result"]["url"]
    assert client.get(url).status_code == 200

    first = expire(now=expires + timedelta(seconds=1))
    mine = [r for r in first["removed"] if r["export_id"] == export["id"]]
    assert mine == [
        {
            "export_id": export["id"],
            "exported_object": "voucher",
            "status": "DONE",
            "location": path,
            "file_removed": True,
            "error": None,
        }
    ]
    assert not __import__("pathlib").Path(path).exists()
    gone = client.get(url)
    assert gone.status_code == 410 and gone.json()["key"] == "export_expired"
    shown = client.get(f"/v1/exports/{export['id']}", headers=demo).json()
    assert shown["state"] == "EXPIRED" and shown["status"] == "ERROR"
    assert "expired" in shown["error"] and shown["result"] is None

    again = expire(now=expires + timedelta(seconds=2))
    assert export["id"] not in {r["export_id"] for r in again["removed"]}
    events = client.get("/v1/audit", params={"export_id": export["id"]}, headers=demo).json()[
        "events"
    ]
    assert [e["action"] for e in events] == ["expire", "download", "create"]
    assert events[2]["actor"] == demo["X-App-Id"] and events[2]["ip"] == "127.0.0.1"
    assert events[0]["actor"] == "maintenance"


def test_expiry_deletes_the_s3_object_and_a_hand_expired_export_answers_410(
    client: httpx.Client,
    api_keys: dict[str, dict[str, str]],
    s3: tuple[str, Any],
    pg: psycopg.Connection,
) -> None:
    from tasks.retention import expire

    bucket, s3_client = s3
    acme = api_keys["acme"]
    export = _done(client, acme, fields=["code"], order="code")
    key = _row(pg, export["id"])["result"]["key"]
    assert s3_client.head_object(Bucket=bucket, Key=key)["ContentLength"] > 0
    # an operator sets EXPIRED by hand: the download is 410 at once, the next run deletes
    pg.execute("UPDATE export_jobs SET status = 'EXPIRED' WHERE id = %s", (export["id"],))
    assert client.get(export["result"]["url"]).status_code == 410
    report = expire()
    assert {r["export_id"]: r["file_removed"] for r in report["removed"]}[export["id"]] is True
    listed = s3_client.list_objects_v2(Bucket=bucket).get("Contents", [])
    assert key not in {o["Key"] for o in listed}
    assert export["id"] not in {r["export_id"] for r in expire()["removed"]}


def test_download_links_expire_and_cannot_be_forged(
    client: httpx.Client,
    api_keys: dict[str, dict[str, str]],
    engine: Any,
) -> None:
    from api import tokens

    export = _done(client, api_keys["demo"], fields=["code"], order="code", format="json")
    export_id = export["id"]
    url = export["result"]["url"]
    token = url.split("token=")[1]
    assert client.get(url).status_code == 200
    base = url.split("?")[0]

    expired = tokens.mint(engine, uuid.UUID(export_id), 60, datetime.now(UTC) - timedelta(1))
    late = client.get(base, params={"token": expired})
    assert late.status_code == 410 and late.json()["key"] == "link_expired"

    tampered = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
    other = _done(client, api_keys["demo"], fields=["code"], order="-code", format="json")
    other_token = other["result"]["url"].split("token=")[1]
    for bad in (tampered, "x" * 40, "", other_token):
        response = client.get(base, params={"token": bad})
        assert response.status_code == 404, bad
    # HEAD works where GET does
    head = client.head(url)
    assert head.status_code == 200 and int(head.headers["content-length"]) > 0


def test_purge_removes_old_rows_keys_and_windows_only(engine: Any, pg: psycopg.Connection) -> None:
    from db import audit
    from db.jobs import create_job, fail_job
    from tasks.retention import purge

    old = create_job(
        engine,
        tenant="demo",
        exported_object="voucher",
        format="csv",
        channel="CLI",
        parameters={},
    )
    fail_job(engine, old.id, "old failure")
    recent = create_job(
        engine,
        tenant="demo",
        exported_object="voucher",
        format="csv",
        channel="CLI",
        parameters={},
    )
    fail_job(engine, recent.id, "recent failure")
    pg.execute(
        "UPDATE export_jobs SET finished_at = now() - interval '200 days' WHERE id = %s",
        (old.id,),
    )
    pg.execute(
        "INSERT INTO api_idempotency_keys (app_id, key, request_hash, export_id, response,"
        " created_at) VALUES ('purge-app', 'old', 'h', %s, '{}', now() - interval '3 days'),"
        " ('purge-app', 'new', 'h', %s, '{}', now())",
        (old.id, old.id),
    )
    pg.execute(
        "INSERT INTO api_rate_limits VALUES ('purge-app', now() - interval '3 hours', 5),"
        " ('purge-app', now(), 1)"
    )
    audit.record(engine, "create", "purge-tenant", audit.Origin("x", "os_user", "CLI"))
    pg.execute(
        "UPDATE export_audit SET at = now() - interval '500 days' WHERE tenant = 'purge-tenant'"
    )

    report = purge()
    assert report["jobs"] >= 1 and report["idempotency_keys"] >= 1
    assert report["rate_limit_windows"] >= 1 and report["audit_events"] >= 1
    ids = {r[0] for r in pg.execute("SELECT id FROM export_jobs").fetchall()}
    assert old.id not in ids and recent.id in ids
    keys = pg.execute("SELECT key FROM api_idempotency_keys WHERE app_id = 'purge-app'").fetchall()
    assert keys == [("new",)]
    (windows,) = pg.execute(
        "SELECT count(*) FROM api_rate_limits WHERE app_id = 'purge-app'"
    ).fetchone()
    assert windows == 1
    assert purge()["jobs"] == 0


def test_the_retention_tasks_run_in_a_flow(exports: None) -> None:
    from prefect import flow

    from tasks.retention import expire_exports, purge_records

    @flow
    def maintenance_for_test() -> tuple[dict[str, Any], dict[str, Any]]:
        return expire_exports(), purge_records()

    expired, purged = maintenance_for_test()
    assert expired["action"] == "expire" and purged["action"] == "purge"


def test_audit_lists_only_the_callers_tenant_newest_first_in_pages(
    client: httpx.Client, api_keys: dict[str, dict[str, str]]
) -> None:
    _done(client, api_keys["acme"], fields=["code"], order="code", format="jsonl")
    demo = client.get("/v1/audit", params={"limit": 100}, headers=api_keys["demo"]).json()
    acme = client.get("/v1/audit", params={"limit": 100}, headers=api_keys["acme"]).json()
    assert demo["object"] == "list" and demo["total"] >= 1 and acme["total"] >= 1
    acme_ids = {e["id"] for e in acme["events"]}
    assert not acme_ids & {e["id"] for e in demo["events"]}
    at = [e["at"] for e in acme["events"]]
    assert at == sorted(at, reverse=True)
    second = client.get(
        "/v1/audit", params={"limit": 1, "page": 2}, headers=api_keys["acme"]
    ).json()
    assert second["events"][0]["id"] == acme["events"][1]["id"]
    assert "token=" not in str(acme["events"]).lower()
    bad = client.get("/v1/audit", params={"action": "steal"}, headers=api_keys["acme"])
    assert bad.status_code == 400
