"""Erasure over the real API and CLI: a requester's exports, a data subject's files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from typer.testing import CliRunner

from tests.integration.test_api import wait_finished


@pytest.fixture
def client(api_url: str) -> httpx.Client:
    with httpx.Client(base_url=api_url, timeout=60) as c:
        yield c


def _done(
    client: httpx.Client, headers: dict[str, str], exported_object: str, **parameters: Any
) -> dict[str, Any]:
    response = client.post(
        "/v1/exports",
        json={"exported_object": exported_object, "parameters": parameters},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    export = wait_finished(client, response.json()["id"], headers)
    assert export["status"] == "DONE", export
    return export


def _location(pg: psycopg.Connection, export_id: str) -> str:
    (result,) = pg.execute("SELECT result FROM export_jobs WHERE id = %s", (export_id,)).fetchone()
    return str(result["location"])


def test_erasing_a_requester_deletes_every_export_it_created_and_only_those(
    client: httpx.Client, api_keys: dict[str, dict[str, str]], engine: Any, pg: psycopg.Connection
) -> None:
    from api.auth import create_key

    app_id, token = create_key(engine, "demo", rate_limit=100)
    leaving = {"X-App-Id": app_id, "X-App-Token": token}
    mine = [
        _done(client, leaving, "voucher", fields=["code"], order="code", format="csv"),
        _done(client, leaving, "order", fields=["id"], order="id", format="json"),
    ]
    files = {e["id"]: _location(pg, e["id"]) for e in mine}
    kept = _done(client, api_keys["demo"], "voucher", fields=["code", "value"], order="code")
    other_tenant = client.delete(f"/v1/requesters/{app_id}/exports", headers=api_keys["acme"])
    assert other_tenant.status_code == 200 and other_tenant.json()["exports"] == 0

    response = client.delete(f"/v1/requesters/{app_id}/exports", headers=api_keys["demo"])
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["object"] == "erasure" and report["requester"] == app_id
    assert report["exports"] == report["files_removed"] == 2 and report["failed"] == 0
    assert {r["export_id"]: r["location"] for r in report["removed"]} == files
    for export_id, path in files.items():
        assert not Path(path).exists()
        assert client.get(f"/v1/exports/{export_id}", headers=api_keys["demo"]).status_code == 404
    assert Path(_location(pg, kept["id"])).exists()
    events = client.get(
        "/v1/audit", params={"action": "erase", "limit": 10}, headers=api_keys["demo"]
    ).json()["events"]
    assert {e["export_id"] for e in events} >= set(files)
    summary = next(e for e in events if e["export_id"] is None)
    assert summary["details"]["kind"] == "requester" and summary["details"]["exports"] == 2
    assert summary["actor"] == api_keys["demo"]["X-App-Id"]


def test_data_subject_erasure_removes_files_that_can_hold_the_customer(
    client: httpx.Client, api_keys: dict[str, dict[str, str]], pg: psycopg.Connection
) -> None:
    from storage.removal import customer_data_objects

    assert customer_data_objects() == ["customer", "order", "publication", "redemption", "voucher"]
    acme = api_keys["acme"]
    holding = [
        _done(client, acme, "customer", fields=["name"], order="name"),
        _done(client, acme, "redemption", format="jsonl"),
    ]
    unrelated = _done(client, acme, "product", format="json")
    files = {e["id"]: _location(pg, e["id"]) for e in holding}
    (customer_id,) = pg.execute(
        "SELECT id FROM customers WHERE tenant_id = 'acme' ORDER BY id LIMIT 1"
    ).fetchone()

    from core.settings import get_settings

    root = get_settings().local_storage_path / "acme"
    before = {str(p) for p in root.rglob("*") if p.is_file()}
    response = client.delete(f"/v1/customers/{customer_id}/exports", headers=acme)
    assert response.status_code == 200, response.text
    report = response.json()
    after = {str(p) for p in root.rglob("*") if p.is_file()}
    # the report is exactly what disappeared from the tenant's storage
    local = {r["location"] for r in report["removed"] if r["file_removed"]}
    assert before - after == {p for p in local if not p.startswith("s3://")}
    assert report["customer_id"] == customer_id and report["failed"] == 0
    removed = {r["export_id"]: r for r in report["removed"]}
    assert set(files) <= set(removed) and unrelated["id"] not in removed
    for export_id, path in files.items():
        assert removed[export_id]["location"] == path and removed[export_id]["file_removed"]
        assert not Path(path).exists()
        shown = client.get(f"/v1/exports/{export_id}", headers=acme).json()
        assert shown["state"] == "EXPIRED" and report["erasure_id"] in shown["error"]
        assert (
            client.get(f"/v1/exports/{export_id}/download", params={"token": "x"}).status_code
            == 404
        )
    # every file reported removed is really gone; nothing else of acme's was touched
    for entry in report["removed"]:
        if entry["location"]:
            assert not Path(entry["location"]).exists()
    assert Path(_location(pg, unrelated["id"])).exists()
    # an export produced after the request is kept
    later = _done(client, acme, "customer", fields=["name", "email"], order="name")
    assert Path(_location(pg, later["id"])).exists()
    again = client.delete(f"/v1/customers/{customer_id}/exports", headers=acme).json()
    assert set(files).isdisjoint(r["export_id"] for r in again["removed"])


def test_cli_erasures_and_audit(
    client: httpx.Client, api_keys: dict[str, dict[str, str]], engine: Any, pg: psycopg.Connection
) -> None:
    from api.auth import create_key
    from exportflow.cli import app

    runner = CliRunner()
    app_id, token = create_key(engine, "acme", rate_limit=100)
    export = _done(
        client, {"X-App-Id": app_id, "X-App-Token": token}, "order", fields=["id"], order="id"
    )
    path = _location(pg, export["id"])
    result = runner.invoke(app, ["erase", "--requester", app_id])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert [r["export_id"] for r in report["removed"]] == [export["id"]]
    assert not Path(path).exists()

    customer = _done(client, api_keys["acme"], "customer", fields=["name"], order="-name")
    result = runner.invoke(app, ["erase", "--tenant", "acme", "--customer", "cust_x"])
    assert result.exit_code == 0, result.output
    assert customer["id"] in {r["export_id"] for r in json.loads(result.output)["removed"]}

    result = runner.invoke(app, ["audit", "--tenant", "acme", "--action", "erase", "--json"])
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.output.splitlines()]
    assert {e["export_id"] for e in events} >= {export["id"], customer["id"]}
    assert all(e["channel"] == "CLI" and e["actor_kind"] == "os_user" for e in events[:2])
    assert runner.invoke(app, ["erase", "--tenant", "acme"]).exit_code == 2
    assert runner.invoke(app, ["audit", "--action", "steal"]).exit_code == 2
