"""The exports API over real HTTP: flows really run, files are downloaded and checked."""

from __future__ import annotations

import concurrent.futures
import hashlib
import time
from typing import Any

import httpx
import psycopg
import pytest

from tests.helpers import read_csv_bytes, stored_job


def wait_finished(client: httpx.Client, export_id: str, headers: dict[str, str]) -> dict[str, Any]:
    """Poll until the export leaves SCHEDULED/IN_PROGRESS (a safety stop, not a timing test)."""
    for _ in range(1200):
        body = client.get(f"/v1/exports/{export_id}", headers=headers).json()
        if body["status"] not in ("SCHEDULED", "IN_PROGRESS"):
            return body
        time.sleep(0.1)
    raise AssertionError(f"export {export_id} never finished: {body}")


@pytest.fixture
def client(api_url: str) -> httpx.Client:
    with httpx.Client(base_url=api_url, timeout=60) as c:
        yield c


def create(client: httpx.Client, headers: dict[str, str], **body: Any) -> httpx.Response:
    return client.post("/v1/exports", json={"exported_object": "voucher", **body}, headers=headers)


@pytest.fixture
def done_export(client: httpx.Client, api_keys: dict[str, dict[str, str]]) -> dict[str, Any]:
    """A finished demo export of vouchers (code, value, oldest first)."""
    response = create(
        client,
        api_keys["demo"],
        parameters={"fields": ["code", "value", "created_at"], "order": "created_at"},
    )
    assert response.status_code == 200, response.text
    return wait_finished(client, response.json()["id"], api_keys["demo"])


def test_created_export_runs_and_the_download_is_the_tenants_rows(
    client: httpx.Client,
    api_keys: dict[str, dict[str, str]],
    done_export: dict[str, Any],
    pg: psycopg.Connection,
) -> None:
    export = done_export
    assert export["object"] == "export"
    assert export["status"] == "DONE" and export["state"] == "DONE"
    assert export["channel"] == "API" and export["exported_object"] == "voucher"
    assert export["parameters"]["fields"] == ["code", "value", "created_at"]
    rows_expected = pg.execute(
        "SELECT code FROM vouchers WHERE tenant_id = 'demo' ORDER BY created_at, id"
    ).fetchall()
    assert export["result"]["row_count"] == export["processed"] == len(rows_expected)

    file = client.get(export["result"]["url"])
    assert file.status_code == 200
    assert hashlib.sha256(file.content).hexdigest() == export["result"]["sha256"]
    assert int(file.headers["content-length"]) == len(file.content) == export["result"]["bytes"]
    assert "attachment" in file.headers["content-disposition"]
    assert file.headers["etag"] == f'"{export["result"]["sha256"]}"'
    header, rows = read_csv_bytes(file.content)
    assert len(header) == 3
    # formula-looking text is prefixed with ' in CSV (see README)
    assert [r[0].removeprefix("'") for r in rows] == [r[0] for r in rows_expected]


def test_range_download_of_the_second_half_equals_the_second_half(
    client: httpx.Client, done_export: dict[str, Any]
) -> None:
    url = done_export["result"]["url"]
    whole = client.get(url).content
    half = len(whole) // 2
    part = client.get(url, headers={"Range": f"bytes={half}-"})
    assert part.status_code == 206
    assert part.content == whole[half:]
    assert part.headers["content-range"] == f"bytes {half}-{len(whole) - 1}/{len(whole)}"
    suffix = client.get(url, headers={"Range": "bytes=-10"})
    assert suffix.status_code == 206 and suffix.content == whole[-10:]
    beyond = client.get(url, headers={"Range": f"bytes={len(whole) + 5}-"})
    assert beyond.status_code == 416
    assert beyond.json()["key"] == "range_not_satisfiable"


def test_twenty_concurrent_identical_posts_give_one_job_and_one_run(
    client: httpx.Client,
    api_keys: dict[str, dict[str, str]],
    api_launcher: Any,
    pg: psycopg.Connection,
) -> None:
    body = {
        "exported_object": "order",
        "parameters": {"fields": ["id", "status"], "order": "-created_at", "format": "json"},
    }

    def post(_: int) -> httpx.Response:
        return client.post("/v1/exports", json=body, headers=api_keys["demo"])

    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        responses = list(pool.map(post, range(20)))
    assert {r.status_code for r in responses} == {200}
    ids = {r.json()["id"] for r in responses}
    assert len(ids) == 1
    (export_id,) = ids
    assert api_launcher.launched.count(__import__("uuid").UUID(export_id)) == 1
    (count,) = pg.execute(
        "SELECT count(*) FROM export_jobs WHERE tenant = 'demo' AND exported_object = 'order'"
        " AND parameters = (SELECT parameters FROM export_jobs WHERE id = %s)",
        (export_id,),
    ).fetchone()
    assert count == 1
    assert wait_finished(client, export_id, api_keys["demo"])["status"] == "DONE"


def test_every_endpoint_answers_404_for_another_tenants_export(
    client: httpx.Client, api_keys: dict[str, dict[str, str]], done_export: dict[str, Any]
) -> None:
    acme = api_keys["acme"]
    export_id = done_export["id"]
    url = done_export["result"]["url"]
    token = url.split("token=")[1]
    attempts = [
        client.get(f"/v1/exports/{export_id}", headers=acme),
        client.delete(f"/v1/exports/{export_id}", headers=acme),
        client.get(f"/v1/exports/{export_id}/download", params={"token": token}, headers=acme),
        client.get(f"/v1/exports/{export_id}", params={"token": token}, headers=acme),
        client.get(f"/v1/exports/{export_id}/download", params={"token": "0" * 64}),
    ]
    for response in attempts:
        assert response.status_code == 404, response.request.url
        assert response.json()["code"] == 404 and response.json()["key"] == "not_found"
    listed = client.get("/v1/exports", params={"limit": 100}, headers=acme).json()
    assert export_id not in {e["id"] for e in listed["exports"]}
    assert client.get(f"/v1/exports/{export_id}", headers=api_keys["demo"]).status_code == 200


def test_missing_wrong_or_insufficient_credentials_are_refused(
    client: httpx.Client, api_keys: dict[str, dict[str, str]]
) -> None:
    demo = api_keys["demo"]
    wrong = {"X-App-Id": demo["X-App-Id"], "X-App-Token": "nope"}
    for headers in ({}, wrong, {"X-App-Id": demo["X-App-Id"]}):
        for response in (
            client.get("/v1/exports", headers=headers),
            create(client, headers),
        ):
            assert response.status_code == 401
            assert response.json()["key"] == "unauthorized"
    assert create(client, api_keys["demo_read"]).status_code == 403
    forbidden = client.get("/v1/exports", headers=api_keys["demo_write"])
    assert forbidden.status_code == 403 and forbidden.json()["key"] == "forbidden"


def test_revoked_key_is_refused(client: httpx.Client, engine: Any) -> None:
    from api.auth import create_key, revoke_key

    app_id, token = create_key(engine, "demo")
    headers = {"X-App-Id": app_id, "X-App-Token": token}
    assert client.get("/v1/exports", headers=headers).status_code == 200
    assert revoke_key(engine, app_id)
    assert client.get("/v1/exports", headers=headers).status_code == 401


def test_creating_beyond_the_rate_limit_gets_429_with_retry_after(
    client: httpx.Client, engine: Any
) -> None:
    from api.auth import create_key

    app_id, token = create_key(engine, "demo", rate_limit=2)
    headers = {"X-App-Id": app_id, "X-App-Token": token}
    bad = {"parameters": {"fields": ["nope"]}}  # counted, but never starts a flow
    assert [create(client, headers, **bad).status_code for _ in range(2)] == [400, 400]
    limited = create(client, headers, **bad)
    assert limited.status_code == 429
    assert limited.json()["key"] == "too_many_requests"
    assert int(limited.headers["retry-after"]) >= 1


def test_invalid_requests_get_voucherify_errors_naming_the_bad_value(
    client: httpx.Client, api_keys: dict[str, dict[str, str]]
) -> None:
    demo = api_keys["demo"]
    cases = [
        (create(client, demo, parameters={"fields": ["code", "secret"]}), "secret"),
        (
            client.post("/v1/exports", json={"exported_object": "spaceship"}, headers=demo),
            "spaceship",
        ),
        (create(client, demo, parameters={"format": "docx"}), "docx"),
        (
            create(client, demo, parameters={"filters": {"code": {"conditions": {"$like": "x"}}}}),
            "$like",
        ),
        (
            client.post(
                "/v1/exports",
                content=b"{not json",
                headers={**demo, "Content-Type": "application/json"},
            ),
            "json",
        ),
        (client.get("/v1/exports", params={"limit": 100_000}, headers=demo), "100000"),
        (client.get("/v1/exports", params={"status": "WHATEVER"}, headers=demo), "status"),
    ]
    for response, mention in cases:
        assert response.status_code == 400, response.text
        body = response.json()
        assert set(body) == {"code", "key", "message", "details"}
        assert body["code"] == 400
        assert mention.lower() in body["message"].lower(), body


def test_idempotency_key_replays_the_response_and_rejects_another_body(
    client: httpx.Client, api_keys: dict[str, dict[str, str]]
) -> None:
    headers = {**api_keys["demo"], "Idempotency-Key": f"k-{time.monotonic_ns()}"}
    params = {"fields": ["code"], "order": "-code", "format": "json"}
    first = create(client, headers, parameters=params)
    again = create(client, headers, parameters=params)
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json()
    other = create(client, headers, parameters={**params, "order": "code"})
    assert other.status_code == 422 and other.json()["key"] == "idempotency_key_reused"
    wait_finished(client, first.json()["id"], api_keys["demo"])


def test_list_filters_pages_and_shapes_like_voucherify(
    client: httpx.Client, api_keys: dict[str, dict[str, str]], done_export: dict[str, Any]
) -> None:
    demo = api_keys["demo"]
    listed = client.get("/v1/exports", params={"limit": 100}, headers=demo).json()
    assert listed["object"] == "list" and listed["data_ref"] == "exports"
    assert listed["total"] >= 1 and done_export["id"] in {e["id"] for e in listed["exports"]}
    created = [e["created_at"] for e in listed["exports"]]
    assert created == sorted(created, reverse=True)
    done = client.get("/v1/exports", params={"status": "DONE"}, headers=demo).json()
    assert {e["status"] for e in done["exports"]} == {"DONE"}
    orders = client.get("/v1/exports", params={"exported_object": "order"}, headers=demo).json()
    assert {e["exported_object"] for e in orders["exports"]} <= {"order"}
    one = client.get("/v1/exports", params={"limit": 1, "page": 2}, headers=demo).json()
    assert len(one["exports"]) == 1 and one["total"] == listed["total"]
    assert one["exports"][0]["id"] == listed["exports"][1]["id"]


def test_delete_removes_the_file_and_the_export(
    client: httpx.Client, api_keys: dict[str, dict[str, str]], done_export: dict[str, Any]
) -> None:
    demo = api_keys["demo"]
    url = done_export["result"]["url"]
    assert client.get(url).status_code == 200
    assert client.delete(f"/v1/exports/{done_export['id']}", headers=demo).status_code == 204
    assert client.get(f"/v1/exports/{done_export['id']}", headers=demo).status_code == 404
    assert client.get(url).status_code == 404
    assert client.delete(f"/v1/exports/{done_export['id']}", headers=demo).status_code == 404


def test_deleting_a_scheduled_export_cancels_it(
    client: httpx.Client, api_keys: dict[str, dict[str, str]], engine: Any, pg: psycopg.Connection
) -> None:

    demo = api_keys["demo"]
    job = stored_job()
    assert client.delete(f"/v1/exports/{job.id}", headers=demo).status_code == 204
    assert pg.execute("SELECT 1 FROM export_jobs WHERE id = %s", (job.id,)).fetchone() is None


def test_presigned_redirect_from_s3_serves_the_file(
    client: httpx.Client, api_keys: dict[str, dict[str, str]], s3: tuple[str, Any]
) -> None:
    response = create(client, api_keys["acme"], parameters={"fields": ["code"], "order": "code"})
    export = wait_finished(client, response.json()["id"], api_keys["acme"])
    assert export["status"] == "DONE", export
    redirect = client.get(export["result"]["url"])
    assert redirect.status_code == 303
    location = redirect.headers["location"]
    assert "X-Amz-Signature=" in location and "X-Amz-Algorithm=AWS4-HMAC-SHA256" in location
    followed = httpx.get(location)
    assert followed.status_code == 200
    assert hashlib.sha256(followed.content).hexdigest() == export["result"]["sha256"]
    header, rows = read_csv_bytes(followed.content)
    assert header and len(rows) == export["result"]["row_count"]


def test_openapi_documents_every_endpoint_and_its_errors(client: httpx.Client) -> None:
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    assert set(paths["/v1/exports"]) == {"get", "post"}
    assert set(paths["/v1/exports/{export_id}"]) == {"get", "delete"}
    assert "get" in paths["/v1/exports/{export_id}/download"]
    for path in paths.values():
        for operation in path.values():
            errors = [c for c in operation["responses"] if c.startswith("4")]
            assert "404" in errors or "400" in errors, operation["summary"]
    assert "ErrorBody" in spec["components"]["schemas"]


def test_the_api_process_does_not_import_great_expectations() -> None:
    import subprocess
    import sys

    code = (
        "import sys; import exportflow.web; exportflow.web.main_app;"
        "print(sorted(m for m in ('great_expectations', 'flows.pipeline', 'exporters.csv',"
        " 'exporters.xlsx', 'exporters.pdf', 'reportlab', 'pandas') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_parameters_that_never_passed_validation_are_shown_apart(
    client: httpx.Client, api_keys: dict[str, dict[str, str]], exports: None
) -> None:
    """A Prefect UI run with a bad sort key is recorded as ERROR with its parameters set apart
    (Voucherify's SDK models would reject the bad value in ``order``)."""
    from flows.exports import FLOWS
    from tests.helpers import run_failing

    job, _ = run_failing(FLOWS["voucher"], tenant="acme", fields=["code"], order="-secret")
    shown = client.get(f"/v1/exports/{job.id}", headers=api_keys["acme"]).json()
    assert shown["status"] == "ERROR" and shown["channel"] == "CLI"
    assert shown["parameters"] == {"rejected": {"fields": ["code"], "order": "-secret"}}
    assert "secret" in shown["error"]


def test_deleting_a_running_export_leaves_no_file_behind(
    client: httpx.Client, api_keys: dict[str, dict[str, str]], api_launcher: Any
) -> None:
    from core.settings import get_settings

    created = create(
        client, api_keys["demo"], parameters={"fields": ["code", "campaign"], "order": "-value"}
    )
    export_id = created.json()["id"]
    assert client.delete(f"/v1/exports/{export_id}", headers=api_keys["demo"]).status_code == 204
    assert client.get(f"/v1/exports/{export_id}", headers=api_keys["demo"]).status_code == 404
    api_launcher.inner.join(120)  # let the flow thread run into the missing job
    storage = get_settings().local_storage_path
    assert not list(storage.rglob(f"*{export_id}*"))
