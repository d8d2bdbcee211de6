"""The export data path end to end: real PostgreSQL, real Prefect flows, files read back."""

from __future__ import annotations

import hashlib
import json
import tempfile
import threading
import uuid
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from core.errors import InvalidRequest
from flows.exports import export_orders, export_vouchers
from tests.helpers import (
    as_csv_text,
    export,
    read_csv,
    read_csv_bytes,
    run_failing,
    sql_rows,
    stored_job,
)

pytestmark = pytest.mark.usefixtures("exports")


def test_default_voucher_export_matches_sql_row_by_row(pg: psycopg.Connection) -> None:
    job = export(export_vouchers, tenant="demo")

    header, rows = read_csv(job["result"]["location"])
    assert header == ["code", "voucher_type", "value", "discount_type"]
    expected = sql_rows(
        pg,
        "SELECT code, voucher_type, value, discount_type FROM vouchers"
        " WHERE tenant_id = 'demo' ORDER BY created_at, id",
    )
    assert rows == [[_text(v) for v in row] for row in expected]
    assert job["status"] == "DONE"
    assert job["total"] == job["progress"] == job["result"]["row_count"] == len(expected)


def _text(value: object) -> str:
    text = as_csv_text(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def test_file_facts_in_result_are_true(pg: psycopg.Connection) -> None:
    job = export(export_orders, tenant="acme", format="json")
    data = Path(job["result"]["location"]).read_bytes()
    assert job["result"]["bytes"] == len(data)
    assert job["result"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert len(json.loads(data)) == job["result"]["row_count"]
    assert job["result"]["key"].startswith(f"acme/exports/{job['created_at'][:4]}/")


def test_chosen_fields_descending_order_and_window_as_json(pg: psycopg.Connection) -> None:
    fields = [
        "id",
        "code",
        "campaign",
        "created_at",
        "active",
        "redemption_count",
        "validity_day_of_week",
        "additional_info",
    ]
    job = export(
        export_vouchers,
        tenant="demo",
        fields=fields,
        order="-created_at",
        format="json",
        filters={
            "created_at": {
                "conditions": {"$after": "2025-03-01T00:00:00Z", "$before": "2025-09-01"}
            }
        },
    )

    data = json.loads(Path(job["result"]["location"]).read_text(encoding="utf-8"))
    expected = sql_rows(
        pg,
        """
        SELECT v.id, v.code, c.name, v.created_at, v.active, v.redemption_count,
               array_to_json(v.validity_day_of_week), v.additional_info
        FROM vouchers v LEFT JOIN campaigns c ON c.id = v.campaign_id
        WHERE v.tenant_id = 'demo' AND v.created_at > '2025-03-01T00:00:00Z'
          AND v.created_at < '2025-09-01T00:00:00Z'
        ORDER BY v.created_at DESC, v.id DESC""",
    )
    assert 0 < len(data) < 3000
    assert [list(obj) for obj in data[:1]] == [fields]
    got = [
        [
            o["id"],
            o["code"],
            o["campaign"],
            o["created_at"],
            o["active"],
            o["redemption_count"],
            o["validity_day_of_week"],
            o["additional_info"],
        ]
        for o in data
    ]
    want = [
        [r[0], r[1], r[2], r[3].strftime("%Y-%m-%dT%H:%M:%S.%fZ"), r[4], r[5], r[6], r[7]]
        for r in expected
    ]
    assert got == want


def test_metadata_expands_to_one_column_per_key_seen(pg: psycopg.Connection) -> None:
    job = export(export_vouchers, tenant="demo", fields=["code", "metadata"], order="code")

    header, rows = read_csv(job["result"]["location"])
    keys = [
        r[0]
        for r in sql_rows(
            pg,
            """
        SELECT DISTINCT k FROM vouchers, jsonb_object_keys(metadata) k
        WHERE tenant_id = 'demo' AND jsonb_typeof(metadata) = 'object' ORDER BY k""",
        )
    ]
    assert header == ["code"] + [f"metadata.{k}" for k in keys]
    expected = sql_rows(
        pg,
        "SELECT code, "
        + ", ".join("metadata->>%s" for _ in keys)
        + " FROM vouchers WHERE tenant_id = 'demo' ORDER BY code, id",
        keys,
    )
    assert rows == [[_text(v) for v in row] for row in expected]


def test_single_metadata_key_is_one_column(pg: psycopg.Connection) -> None:
    job = export(export_orders, tenant="demo", fields=["id", "metadata.store"], order="-id")
    header, rows = read_csv(job["result"]["location"])
    assert header == ["id", "metadata.store"]
    expected = sql_rows(
        pg, "SELECT id, metadata->>'store' FROM orders WHERE tenant_id = 'demo' ORDER BY id DESC"
    )
    assert rows == [[_text(v) for v in row] for row in expected]


def test_campaign_filter_returns_only_those_campaigns(pg: psycopg.Connection) -> None:
    campaigns = ["camp_demo_00000003", "camp_demo_00000007"]
    job = export(
        export_vouchers,
        tenant="demo",
        fields=["id", "campaign_id"],
        filters={"campaign_ids": {"conditions": {"$in": campaigns}}},
    )
    _, rows = read_csv(job["result"]["location"])
    expected = sql_rows(
        pg,
        "SELECT id, campaign_id FROM vouchers WHERE tenant_id = 'demo'"
        " AND campaign_id = ANY(%s) ORDER BY created_at, id",
        [campaigns],
    )
    assert rows == [list(r) for r in expected]
    assert {r[1] for r in rows} == set(campaigns)


def test_zero_rows_give_header_only_csv_and_empty_json_array() -> None:
    none = {"code": {"conditions": {"$is": "no such code"}}}
    csv_job = export(export_vouchers, tenant="demo", filters=none)
    json_job = export(export_vouchers, tenant="demo", filters=none, format="json")

    assert (
        Path(csv_job["result"]["location"]).read_text() == "code,voucher_type,value,discount_type\n"
    )
    assert json.loads(Path(json_job["result"]["location"]).read_text()) == []
    assert csv_job["result"]["row_count"] == json_job["result"]["row_count"] == 0


def test_unicode_quotes_newlines_and_nulls_round_trip(pg: psycopg.Connection) -> None:
    job = export(
        export_vouchers, tenant="acme", fields=["id", "additional_info"], order="id", format="json"
    )
    data = json.loads(Path(job["result"]["location"]).read_text(encoding="utf-8"))
    expected = dict(
        sql_rows(pg, "SELECT id, additional_info FROM vouchers WHERE tenant_id = 'acme'")
    )
    assert {o["id"]: o["additional_info"] for o in data} == expected
    values = set(expected.values())
    assert {None, "", "multi\nline\nnote", "Zürich café ☕", 'Say "hello" to savings'} <= values

    csv_job = export(export_vouchers, tenant="acme", fields=["id", "additional_info"], order="id")
    raw = Path(csv_job["result"]["location"]).read_bytes()
    _, rows = read_csv_bytes(raw)
    assert {r[0]: r[1] for r in rows} == {k: _text(v) for k, v in expected.items()}
    assert b',""\n' in raw  # empty string is quoted ...
    assert b",\n" in raw.replace(b',""\n', b"")  # ... NULL is not


def test_other_tenants_rows_never_appear(pg: psycopg.Connection) -> None:
    job = export(export_vouchers, tenant="acme", fields=["id"])
    _, rows = read_csv(job["result"]["location"])
    assert rows and all(r[0].startswith("v_acme_") for r in rows)
    assert len(rows) == sql_rows(pg, "SELECT count(*) FROM vouchers WHERE tenant_id='acme'")[0][0]


def test_unknown_field_is_rejected_before_any_row_is_read() -> None:
    job, exc = run_failing(export_vouchers, tenant="demo", fields=["code", "secret_column"])

    assert isinstance(exc, InvalidRequest)
    assert job.status == "ERROR"
    assert "unknown field 'secret_column'" in (job.error or "")
    assert "allowed:" in (job.error or "") and "discount_type" in (job.error or "")
    assert job.total is None and job.progress == 0 and job.result is None


def test_validation_failure_fails_the_job_and_stores_nothing(
    engine: sa.Engine, s3: tuple[str, object]
) -> None:
    bucket, client = s3
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO tenants (id, name) VALUES ('broken', 'Broken') ON CONFLICT DO NOTHING"
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO vouchers (id, tenant_id, code, voucher_type, value, discount_type)"
                " VALUES ('v_broken_1', 'broken', 'OK-1', 'DISCOUNT_VOUCHER', 5, 'AMOUNT'),"
                "        ('v_broken_2', 'broken', 'BAD-1', 'MYSTERY', -3, 'AMOUNT')"
                " ON CONFLICT DO NOTHING"
            )
        )
    job, _ = run_failing(export_vouchers, tenant="broken")

    assert job.status == "ERROR"
    assert "expect_column_values_to_be_in_set(voucher_type)" in (job.error or "")
    assert "expect_column_values_to_be_between(value)" in (job.error or "")
    assert "MYSTERY" in (job.error or "")
    listed = client.list_objects_v2(Bucket=bucket)  # type: ignore[attr-defined]
    assert listed.get("KeyCount", 0) == 0


def test_s3_storage_uses_the_key_layout_and_uploads_the_exact_file(
    s3: tuple[str, object], pg: psycopg.Connection
) -> None:
    bucket, client = s3
    job = export(export_orders, tenant="acme", fields=["id", "amount", "status"])
    created = job["created_at"]
    key = f"acme/exports/{created[:4]}/{created[5:7]}/order-{job['id']}.csv"
    assert job["result"]["key"] == key
    assert job["result"]["location"] == f"s3://{bucket}/{key}"
    body = client.get_object(Bucket=bucket, Key=key)["Body"].read()  # type: ignore[attr-defined]
    assert hashlib.sha256(body).hexdigest() == job["result"]["sha256"]
    _, rows = read_csv_bytes(body)
    expected = sql_rows(
        pg, "SELECT id, amount, status FROM orders WHERE tenant_id = 'acme' ORDER BY created_at, id"
    )
    assert rows == [[str(v) for v in r] for r in expected]


def test_progress_is_visible_to_other_connections_while_running(
    engine: sa.Engine, pg: psycopg.Connection
) -> None:
    """Drive the pipeline's own pieces with tiny chunks; read the job row from elsewhere."""
    from db import jobs
    from entities import VOUCHERS
    from query.plan import plan_export
    from tasks.write import write_file

    job = stored_job(claimed=True)
    seen: list[tuple[str, int, int | None]] = []

    def progress(n: int) -> None:
        jobs.heartbeat(engine, job.id, job.attempt, progress=n)
        seen.append(
            pg.execute(
                "SELECT status, progress, total FROM export_jobs WHERE id = %s", [job.id]
            ).fetchone()
        )

    from core.settings import Settings

    plan = plan_export(
        VOUCHERS, "demo", {"fields": ["id", "code", "additional_info"], "validation": False}
    )
    path = Path(tempfile.mkdtemp()) / "out.csv"
    write_file(
        engine,
        plan,
        path,
        settings=Settings(chunk_bytes=1 << 14),
        on_total=lambda n: jobs.record_total(engine, job.id, job.attempt, n),
        on_progress=progress,
    )

    assert len(seen) > 2
    assert all(status == "IN_PROGRESS" and total == 3000 for status, _, total in seen)
    assert [p for _, p, _ in seen] == sorted({p for _, p, _ in seen})
    assert seen[-1][1] == 3000


def test_the_lease_is_renewed_at_the_first_chunk_then_at_most_every_heartbeat_s(
    engine: sa.Engine, pg: psycopg.Connection
) -> None:
    """Renewals are throttled (one UPDATE per ``heartbeat_s``, not per chunk); the run timeout
    is still checked at every chunk, and a renewal that finds the job cancelled stops it."""
    import time

    from core.errors import ExportCancelled, TimedOut
    from core.settings import Settings
    from db import jobs
    from tasks.write import Heartbeat

    def claimed() -> jobs.Job:
        return stored_job(parameters={"fields": ["code"], "note": uuid.uuid4().hex}, claimed=True)

    def progress(job: jobs.Job) -> int:
        row = pg.execute("SELECT progress FROM export_jobs WHERE id = %s", [job.id]).fetchone()
        assert row is not None
        return int(row[0])

    job = claimed()
    beat = Heartbeat(job, time.monotonic() + 3600, Settings(heartbeat_s=30))
    beat(10)
    beat(20)
    beat(30)
    assert progress(job) == 10  # the first chunk renewed; the next two were within heartbeat_s
    jobs.cancel_job(engine, job.id)
    beat(40)  # no renewal yet: it does not know
    every = Heartbeat(job, time.monotonic() + 3600, Settings(heartbeat_s=0))
    with pytest.raises(ExportCancelled):
        every(50)

    job = claimed()
    every = Heartbeat(job, time.monotonic() + 3600, Settings(heartbeat_s=0))
    for rows in (1, 2, 3):
        every(rows)
        assert progress(job) == rows
    late = Heartbeat(job, time.monotonic() - 1, Settings(heartbeat_s=30))
    with pytest.raises(TimedOut):
        late(4)  # renews (its first chunk), then finds the run timeout passed
    with pytest.raises(TimedOut):
        late(5)  # no renewal, the timeout is checked all the same
    assert progress(job) == 4


def test_finished_job_never_goes_back(engine: sa.Engine) -> None:
    job = export(export_orders, tenant="demo", fields=["id"])
    with (
        pytest.raises(sa.exc.DBAPIError, match="illegal status change DONE -> IN_PROGRESS"),
        engine.begin() as conn,
    ):
        conn.execute(
            sa.text("UPDATE export_jobs SET status = 'IN_PROGRESS' WHERE id = :id"),
            {"id": uuid.UUID(job["id"])},
        )


def test_concurrent_exports_each_get_their_own_file() -> None:
    results: list[dict] = []
    threads = [
        threading.Thread(
            target=lambda t=t: results.append(export(export_orders, tenant=t, fields=["id"]))
        )
        for t in ("demo", "acme")
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {r["tenant"] for r in results} == {"demo", "acme"}
    assert len({r["result"]["location"] for r in results}) == 2


def test_nul_in_parameters_is_refused_with_a_clear_message() -> None:
    with pytest.raises(InvalidRequest, match="NUL character"):
        export(export_vouchers, tenant="demo", filters={"code": {"conditions": {"$is": "a\x00b"}}})


def test_a_bad_row_deep_in_a_grouped_export_fails_it_with_its_group(engine: sa.Engine) -> None:
    """3,000 rows in ~16 kB chunks, checked in groups of at least 1,000 rows: the one bad row
    (the 1,500th) fails the export, and the message names the rows of the group it was in."""
    from core.errors import ValidationFailed
    from core.settings import Settings
    from entities import VOUCHERS
    from query.plan import plan_export
    from tasks.write import write_file

    with engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO tenants (id, name) VALUES ('late', 'Late') ON CONFLICT DO NOTHING")
        )
        conn.execute(
            sa.text(
                "INSERT INTO vouchers (id, tenant_id, code, voucher_type, value, discount_type,"
                " created_at)"
                " SELECT 'v_late_' || n, 'late', 'LATE-' || n,"
                "        CASE WHEN n = 1500 THEN 'MYSTERY' ELSE 'GIFT_VOUCHER' END, 1, 'AMOUNT',"
                "        timestamptz '2024-01-01' + n * interval '1 second'"
                " FROM generate_series(1, 3000) AS n ON CONFLICT DO NOTHING"
            )
        )
    plan = plan_export(VOUCHERS, "late", {"fields": ["code", "voucher_type", "value"]})
    path = Path(tempfile.mkdtemp()) / "out.csv"
    chunks: list[int] = []
    with pytest.raises(ValidationFailed) as failed:
        write_file(
            engine,
            plan,
            path,
            settings=Settings(chunk_bytes=1 << 14, validate_rows=1000),
            on_progress=chunks.append,
        )
    message = str(failed.value)
    first, last = (int(n) for n in message.split(" rows ")[1].split(" ")[0].split("-"))
    assert first <= 1500 <= last
    assert last - first + 1 >= 1000  # a whole group, not one chunk
    assert len(chunks) >= 3  # the chunks of the groups before it, at least, were written
    assert "expect_column_values_to_be_in_set(voucher_type): 1 rows (row 1500)" in message
    assert failed.value.details[0]["rows"] == [1500]
    assert "MYSTERY" in message
