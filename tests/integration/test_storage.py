"""Storage that never loses track of a file: settings path and a saved S3Bucket block with a
bucket_folder, a tenant named like the folder, settings changed between export and download,
verified deletes, HEAD, SigV4 presigned URLs, per-entity routing and ACL."""

from __future__ import annotations

import uuid
from typing import Any

import boto3
import httpx
import psycopg
import pytest

from core.settings import get_settings
from tests.integration.test_api import create, wait_finished


@pytest.fixture
def client(api_url: str) -> httpx.Client:
    with httpx.Client(base_url=api_url, timeout=60) as c:
        yield c


def _bucket(s3_server: str) -> tuple[str, Any]:
    name = f"exports-{uuid.uuid4().hex[:12]}"
    s3 = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1")
    s3.create_bucket(Bucket=name)
    return name, s3


def _save_block(s3_server: str, bucket: str, folder: str) -> str:
    from prefect_aws import AwsClientParameters, AwsCredentials, S3Bucket

    name = f"b-{uuid.uuid4().hex[:10]}"
    S3Bucket(
        bucket_name=bucket,
        bucket_folder=folder,
        credentials=AwsCredentials(
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
            # no signature_version: the block's client would presign SigV2
            aws_client_parameters=AwsClientParameters(endpoint_url=s3_server),
        ),
    ).save(name, overwrite=True)
    return f"s3-bucket/{name}"


def _keys(s3: Any, bucket: str) -> set[str]:
    return {o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])}


def _check_served_deleted(
    client: httpx.Client, headers: dict[str, str], export: dict[str, Any], s3: Any, bucket: str
) -> None:
    url = export["result"]["url"]
    head = client.head(url)
    assert head.status_code == 303
    redirect = client.get(url)
    assert redirect.status_code == 303
    location = redirect.headers["location"]
    assert "X-Amz-Signature=" in location and "AWSAccessKeyId" not in location
    body = httpx.get(location)
    assert body.status_code == 200 and len(body.content) == export["result"]["bytes"]
    assert httpx.head(location).status_code == 200
    assert client.delete(f"/v1/exports/{export['id']}", headers=headers).status_code == 204
    assert not any(export["id"] in k for k in _keys(s3, bucket))


def test_saved_block_with_a_folder_named_like_the_tenant_survives_a_settings_change(
    client: httpx.Client,
    api_keys: dict[str, dict[str, str]],
    s3_server: str,
    prefect_server: None,
    monkeypatch: pytest.MonkeyPatch,
    pg: psycopg.Connection,
) -> None:
    bucket, s3 = _bucket(s3_server)
    block = _save_block(s3_server, bucket, "acme")
    monkeypatch.setenv("EXPORTFLOW_STORAGE_BLOCK", block)
    get_settings.cache_clear()
    acme = api_keys["acme"]
    export = wait_finished(
        client, create(client, acme, parameters={"fields": ["code"]}).json()["id"], acme
    )
    assert export["status"] == "DONE", export
    (result,) = pg.execute(
        "SELECT result FROM export_jobs WHERE id = %s", (export["id"],)
    ).fetchone()
    assert result["block"] == block and result["bucket"] == bucket
    assert result["key"].startswith("acme/acme/exports/")  # folder + tenant, both kept
    assert _keys(s3, bucket) >= {result["key"]}
    # the settings change: another block, another bucket; the recorded location still rules
    other_bucket, _ = _bucket(s3_server)
    monkeypatch.setenv("EXPORTFLOW_STORAGE_BLOCK", _save_block(s3_server, other_bucket, "x"))
    get_settings.cache_clear()
    _check_served_deleted(client, acme, export, s3, bucket)


def test_settings_path_with_folder_survives_a_settings_change_and_delete_is_verified(
    client: httpx.Client,
    api_keys: dict[str, dict[str, str]],
    s3_server: str,
    monkeypatch: pytest.MonkeyPatch,
    pg: psycopg.Connection,
) -> None:
    bucket, s3 = _bucket(s3_server)
    monkeypatch.setenv("EXPORTFLOW_S3_BUCKET", bucket)
    monkeypatch.setenv("EXPORTFLOW_S3_ENDPOINT_URL", s3_server)
    monkeypatch.setenv("EXPORTFLOW_S3_FOLDER", "demo")
    get_settings.cache_clear()
    demo = api_keys["demo"]
    exports = [
        wait_finished(client, create(client, demo, parameters=p).json()["id"], demo)
        for p in ({"fields": ["code"], "order": "id"}, {"fields": ["code"], "order": "-id"})
    ]
    assert {e["status"] for e in exports} == {"DONE"}
    monkeypatch.setenv("EXPORTFLOW_S3_BUCKET", _bucket(s3_server)[0])
    monkeypatch.setenv("EXPORTFLOW_S3_FOLDER", "elsewhere")
    get_settings.cache_clear()
    _check_served_deleted(client, demo, exports[0], s3, bucket)
    # a DELETE the storage cannot carry out is an error, and the export is kept
    pg.execute(
        "UPDATE export_jobs SET result = result || jsonb_build_object('bucket',"
        " 'no-such-bucket', 'location', 's3://no-such-bucket/' || (result->>'key'))"
        " WHERE id = %s",
        (exports[1]["id"],),
    )
    failed = client.delete(f"/v1/exports/{exports[1]['id']}", headers=demo)
    assert failed.status_code == 503 and "no-such-bucket" not in failed.text
    assert client.get(f"/v1/exports/{exports[1]['id']}", headers=demo).status_code == 200


def test_entity_routing_sends_orders_to_their_own_block_with_their_acl(
    client: httpx.Client,
    api_keys: dict[str, dict[str, str]],
    s3_server: str,
    s3: tuple[str, Any],
    prefect_server: None,
    monkeypatch: pytest.MonkeyPatch,
    pg: psycopg.Connection,
) -> None:
    default_bucket, s3_client = s3
    orders_bucket, _ = _bucket(s3_server)
    block = _save_block(s3_server, orders_bucket, "")
    monkeypatch.setenv("EXPORTFLOW_ENTITY_STORAGE", f'{{"order": "{block}"}}')
    monkeypatch.setenv("EXPORTFLOW_ENTITY_ACL", '{"order": "authenticated-read"}')
    get_settings.cache_clear()
    demo = api_keys["demo"]
    order = wait_finished(
        client,
        client.post(
            "/v1/exports",
            json={"exported_object": "order", "parameters": {"fields": ["id"], "order": "-id"}},
            headers=demo,
        ).json()["id"],
        demo,
    )
    voucher = wait_finished(
        client,
        create(client, demo, parameters={"fields": ["code"], "order": "-id"}).json()["id"],
        demo,
    )
    rows = dict(
        pg.execute(
            "SELECT exported_object, result FROM export_jobs WHERE id IN (%s, %s)",
            (order["id"], voucher["id"]),
        ).fetchall()
    )
    assert rows["order"]["block"] == block and rows["order"]["bucket"] == orders_bucket
    assert rows["order"]["acl"] == "authenticated-read"
    assert rows["voucher"]["bucket"] == default_bucket and rows["voucher"]["acl"] == "private"
    grants = s3_client.get_object_acl(Bucket=orders_bucket, Key=rows["order"]["key"])["Grants"]
    assert any("AuthenticatedUsers" in str(g["Grantee"]) for g in grants)
    private = s3_client.get_object_acl(Bucket=default_bucket, Key=rows["voucher"]["key"])
    assert not any("AuthenticatedUsers" in str(g["Grantee"]) for g in private["Grants"])
    assert httpx.get(client.get(order["result"]["url"]).headers["location"]).status_code == 200
