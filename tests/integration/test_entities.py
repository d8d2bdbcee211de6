"""Every entity, end to end: real flows, files read back, compared with hand-written SQL.

The SQL here is written independently of the declarations (joins, aggregates as GROUP BY
subqueries instead of correlated ones), so a wrong expression or join in an entity shows up
as a row that differs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

from entities import ENTITIES
from flows.exports import FLOWS
from query.plan import plan_export
from tasks.extract import open_extract
from tests.helpers import as_csv_text, export, read_csv, sql_rows

pytestmark = pytest.mark.usefixtures("exports")

FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\x00")

DEFAULT_SQL = {
    "voucher": "SELECT code, voucher_type, value, discount_type FROM vouchers"
    " WHERE tenant_id = 'demo' ORDER BY created_at, id",
    "order": "SELECT id, source_id, status FROM orders WHERE tenant_id = 'demo'"
    " ORDER BY created_at, id",
    "redemption": "SELECT r.id, r.object, v.code, r.customer_id, r.date, r.result"
    " FROM redemptions r LEFT JOIN vouchers v ON v.id = r.voucher_id"
    " WHERE r.tenant_id = 'demo' ORDER BY r.date, r.id",
    "publication": "SELECT v.code, p.customer_id, p.date, p.channel"
    " FROM publications p LEFT JOIN vouchers v ON v.id = p.voucher_id"
    " WHERE p.tenant_id = 'demo' ORDER BY p.date, p.id",
    "customer": "SELECT name, source_id FROM customers WHERE tenant_id = 'demo'"
    " ORDER BY created_at, id",
    "product": "SELECT id, name, price, image_url, source_id, array_to_json(attributes)::text,"
    " created_at FROM products WHERE tenant_id = 'demo' ORDER BY created_at, id",
    "sku": "SELECT id, sku, product_id, currency, price, image_url, source_id, attributes::text,"
    " created_at FROM skus WHERE tenant_id = 'demo' ORDER BY created_at, id",
    "points_expiration": "SELECT id, campaign_id, voucher_id, status, expires_at, points"
    " FROM loyalty_point_buckets WHERE tenant_id = 'demo' ORDER BY expires_at, id",
    "voucher_transactions": "SELECT id, type, source_id, status, reason, source, balance,"
    " amount, created_at FROM voucher_transactions WHERE tenant_id = 'demo'"
    " ORDER BY created_at, id",
}

DEFAULT_HEADERS = {
    "voucher": ["code", "voucher_type", "value", "discount_type"],
    "order": ["id", "source_id", "status"],
    "redemption": ["id", "object", "voucher_code", "customer_id", "date", "result"],
    "publication": ["code", "customer_id", "date", "channel"],
    "customer": ["name", "source_id"],
    "product": ["id", "name", "price", "image_url", "source_id", "attributes", "created_at"],
    "sku": [
        "id",
        "sku",
        "product_id",
        "currency",
        "price",
        "image_url",
        "source_id",
        "attributes",
        "created_at",
    ],
    "points_expiration": ["id", "campaign_id", "voucher_id", "status", "expires_at", "points"],
    "voucher_transactions": [
        "id",
        "type",
        "source_id",
        "status",
        "reason",
        "source",
        "balance",
        "amount",
        "created_at",
    ],
}

# Every declared field in declaration order; {meta} is where `metadata` expands to one
# `<alias>.metadata->>%s` per key.
ALL_FIELDS_SQL = {
    "voucher": """
        SELECT v.id, v.code, c.name, v.campaign_id, v.category, v.category_id, v.voucher_type,
               v.value, v.discount_type, v.discount_amount_limit, v.discount_unit_type,
               v.discount_unit_effect, v.gift_balance, v.loyalty_balance,
               v.redemption_quantity, v.redemption_count, v.start_date, v.expiration_date,
               v.created_at, v.updated_at, v.validity_timeframe_interval,
               v.validity_timeframe_duration, array_to_json(v.validity_day_of_week)::text,
               v.active, v.is_referral_code, v.qr_code, v.bar_code, v.customer_id,
               cu.source_id {meta}, v.additional_info
        FROM vouchers v LEFT JOIN campaigns c ON c.id = v.campaign_id
        LEFT JOIN customers cu ON cu.id = v.customer_id
        WHERE v.tenant_id = 'demo' ORDER BY v.created_at, v.id""",
    "order": """
        SELECT o.id, o.source_id, o.status, o.amount, o.discount_amount,
               o.items_discount_amount, o.total_discount_amount, o.total_amount, o.created_at,
               o.updated_at, o.customer_id, o.referrer_id {meta}
        FROM orders o WHERE o.tenant_id = 'demo' ORDER BY o.created_at, o.id""",
    "redemption": """
        SELECT r.id, r.object, v.code, r.voucher_id, c.name, v.campaign_id,
               r.promotion_tier_id, r.tracking_id, r.order_id, r.customer_id, cu.source_id,
               cu.name, r.amount, r.gift_amount, r.loyalty_points, r.result, r.status,
               r.failure_code, r.failure_message, r.date {meta}
        FROM redemptions r LEFT JOIN vouchers v ON v.id = r.voucher_id
        LEFT JOIN campaigns c ON c.id = v.campaign_id
        LEFT JOIN customers cu ON cu.id = r.customer_id
        WHERE r.tenant_id = 'demo' ORDER BY r.date, r.id""",
    "publication": """
        SELECT p.id, v.code, v.code, p.voucher_id, c.name, v.campaign_id, p.customer_id,
               cu.source_id, p.date, p.channel, p.is_winner {meta}
        FROM publications p LEFT JOIN vouchers v ON v.id = p.voucher_id
        LEFT JOIN campaigns c ON c.id = v.campaign_id
        LEFT JOIN customers cu ON cu.id = p.customer_id
        WHERE p.tenant_id = 'demo' ORDER BY p.date, p.id""",
    "customer": """
        SELECT c.id, c.source_id, c.name, c.email, c.description, c.phone, c.address_city,
               c.address_state, c.address_line_1, c.address_line_2, c.address_country,
               c.address_postal_code, c.created_at, c.updated_at, c.birthday, c.birthdate,
               c.referrer_id,
               coalesce(r.redeemed, 0), coalesce(r.failed, 0), coalesce(r.succeeded, 0),
               coalesce(r.rolled_back, 0), coalesce(r.rollback_failed, 0),
               coalesce(r.rollback_succeeded, 0),
               coalesce(o.total, 0), coalesce(o.n, 0), o.average, o.last_amount, o.last_date,
               coalesce(l.points, 0), coalesce(rf.n, 0) {meta}
        FROM customers c
        LEFT JOIN (
            SELECT customer_id,
                   count(*) FILTER (WHERE object = 'redemption') AS redeemed,
                   count(*) FILTER (WHERE object = 'redemption' AND result = 'FAILURE') AS failed,
                   count(*) FILTER (WHERE object = 'redemption' AND result = 'SUCCESS')
                       AS succeeded,
                   count(*) FILTER (WHERE object = 'redemption' AND status = 'ROLLED_BACK')
                       AS rolled_back,
                   count(*) FILTER (WHERE object = 'redemption_rollback' AND result = 'FAILURE')
                       AS rollback_failed,
                   count(*) FILTER (WHERE object = 'redemption_rollback' AND result = 'SUCCESS')
                       AS rollback_succeeded
            FROM redemptions WHERE tenant_id = 'demo' GROUP BY customer_id
        ) r ON r.customer_id = c.id
        LEFT JOIN (
            SELECT customer_id, sum(amount) AS total, count(*) AS n,
                   round(avg(amount), 2) AS average, max(created_at) AS last_date,
                   (array_agg(amount ORDER BY created_at DESC, id DESC))[1] AS last_amount
            FROM orders WHERE tenant_id = 'demo' GROUP BY customer_id
        ) o ON o.customer_id = c.id
        LEFT JOIN (
            SELECT customer_id, sum(loyalty_balance) AS points FROM vouchers
            WHERE tenant_id = 'demo' AND voucher_type = 'LOYALTY_CARD' GROUP BY customer_id
        ) l ON l.customer_id = c.id
        LEFT JOIN (
            SELECT referrer_id, count(*) AS n FROM customers
            WHERE tenant_id = 'demo' GROUP BY referrer_id
        ) rf ON rf.referrer_id = c.id
        WHERE c.tenant_id = 'demo' ORDER BY c.created_at, c.id""",
    "product": """
        SELECT p.id, p.source_id, p.name, p.price, p.image_url,
               array_to_json(p.attributes)::text, p.created_at, p.updated_at {meta}
        FROM products p WHERE p.tenant_id = 'demo' ORDER BY p.created_at, p.id""",
    "sku": """
        SELECT s.id, s.sku, s.product_id, s.source_id, s.currency, s.price, s.image_url,
               s.attributes::text, s.created_at, s.updated_at {meta}
        FROM skus s WHERE s.tenant_id = 'demo' ORDER BY s.created_at, s.id""",
    "points_expiration": """
        SELECT id, campaign_id, voucher_id, status, expires_at, points, created_at
        FROM loyalty_point_buckets WHERE tenant_id = 'demo' ORDER BY expires_at, id""",
    "voucher_transactions": """
        SELECT id, source_id, voucher_id, campaign_id, type, status, reason, source, balance,
               amount, related_transaction_id, created_at, details::text
        FROM voucher_transactions WHERE tenant_id = 'demo' ORDER BY created_at, id""",
}

ALIASES = {
    "voucher": "v",
    "order": "o",
    "redemption": "r",
    "publication": "p",
    "customer": "c",
    "product": "p",
    "sku": "s",
}

TABLES = {
    "voucher": ("vouchers", "v_"),
    "order": ("orders", "ord_"),
    "redemption": ("redemptions", "r_"),
    "publication": ("publications", "pub_"),
    "customer": ("customers", "cust_"),
    "product": ("products", "prod_"),
    "sku": ("skus", "sku_"),
    "points_expiration": ("loyalty_point_buckets", "lpb_"),
    "voucher_transactions": ("voucher_transactions", "vtx_"),
}


def csv_cells(entity: str, header: list[str], rows: list[tuple[Any, ...]]) -> list[list[str]]:
    """Render SQL rows as the CSV writer does: NULL empty, ISO UTC times, formulas neutralised."""
    types = [c.type for c in plan_export(ENTITIES[entity], "demo", {"fields": header}).columns()]
    out = []
    for row in rows:
        cells = []
        for kind, value in zip(types, row, strict=True):
            text = as_csv_text(value)
            if kind in ("string", "json") and text.startswith(FORMULA_START):
                text = "'" + text
            cells.append(text)
        out.append(cells)
    return out


def test_catalog_declares_the_nine_entities_of_the_seed() -> None:
    assert set(ENTITIES) == set(DEFAULT_SQL) == set(ALL_FIELDS_SQL) == set(TABLES)
    for name, entity in ENTITIES.items():
        assert list(entity.default_fields) == DEFAULT_HEADERS[name]


@pytest.mark.parametrize("entity", sorted(DEFAULT_SQL))
def test_default_export_matches_sql_row_by_row(entity: str, pg: psycopg.Connection) -> None:
    job = export(FLOWS[entity], tenant="demo")

    header, rows = read_csv(job["result"]["location"])
    assert header == DEFAULT_HEADERS[entity]
    expected = sql_rows(pg, DEFAULT_SQL[entity])
    assert len(expected) > 50
    assert rows == csv_cells(entity, header, expected)
    assert job["status"] == "DONE" and job["result"]["row_count"] == len(expected)


@pytest.mark.parametrize("entity", sorted(ALL_FIELDS_SQL))
def test_all_fields_export_matches_sql_row_by_row(entity: str, pg: psycopg.Connection) -> None:
    declared = ENTITIES[entity]
    fields = list(declared.fields)
    job = export(FLOWS[entity], tenant="demo", fields=fields)

    header, rows = read_csv(job["result"]["location"])
    keys: list[str] = []
    if declared.metadata_column is not None:
        table = TABLES[entity][0]
        keys = [
            r[0]
            for r in sql_rows(
                pg,
                f"SELECT DISTINCT k FROM {table}, jsonb_object_keys(metadata) k"
                " WHERE tenant_id = 'demo' AND jsonb_typeof(metadata) = 'object' ORDER BY k",
            )
        ]
        assert keys
    at = fields.index("metadata") if "metadata" in fields else len(fields)
    assert header == fields[:at] + [f"metadata.{k}" for k in keys] + fields[at + 1 :]
    meta = "".join(f", {ALIASES.get(entity)}.metadata->>%s" for _ in keys)
    expected = sql_rows(pg, ALL_FIELDS_SQL[entity].format(meta=meta), keys or None)
    assert len(expected) > 50
    assert rows == csv_cells(entity, header, expected)


def test_customer_aggregates_are_not_all_zero(pg: psycopg.Connection) -> None:
    """The seed gives customers orders, redemptions, rollbacks, loyalty cards and referrals."""
    aggregates = [
        n for n in ENTITIES["customer"].fields if n.startswith(("redemptions_", "orders_"))
    ]
    aggregates += ["loyalty_points", "loyalty_referred_customers"]
    job = export(FLOWS["customer"], tenant="acme", fields=["id", *aggregates], format="json")

    data = json.loads(Path(job["result"]["location"]).read_text(encoding="utf-8"))
    assert data and all(o["id"].startswith("cust_acme_") for o in data)
    for name in aggregates:
        assert any(o[name] not in (0, None) for o in data), name


@pytest.mark.parametrize("entity", sorted(TABLES))
def test_other_tenants_rows_never_appear(
    entity: str, engine: sa.Engine, pg: psycopg.Connection
) -> None:
    """The extract for acme reads acme's rows only (the flows above match demo's SQL exactly)."""
    table, prefix = TABLES[entity]
    plan = plan_export(ENTITIES[entity], "acme", {"fields": ["id"]})
    with open_extract(engine, plan, 1 << 20) as extract:
        ids = [v for batch in extract.batches for v in batch.column(0).to_pylist()]

    expected = sql_rows(pg, f"SELECT id FROM {table} WHERE tenant_id = 'acme'")
    assert sorted(ids) == sorted(r[0] for r in expected)
    assert all(i.startswith(f"{prefix}acme_") for i in ids)
    assert bool(ids) == (entity != "voucher_transactions")


def test_entity_without_rows_for_a_tenant_gives_a_header_only_file() -> None:
    job = export(FLOWS["voucher_transactions"], tenant="acme")

    header, rows = read_csv(job["result"]["location"])
    assert header == DEFAULT_HEADERS["voucher_transactions"] and rows == []
    assert job["status"] == "DONE" and job["total"] == job["result"]["row_count"] == 0


def test_older_sample_database_gets_the_new_indexes(engine: object) -> None:
    import sqlalchemy as sa

    from devtools.sample import create_source_schema

    assert isinstance(engine, sa.Engine)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP INDEX ix_orders_tenant_customer"))
    create_source_schema(engine)
    create_source_schema(engine)  # idempotent
    with engine.connect() as conn:
        indexes = {i["name"] for i in sa.inspect(conn).get_indexes("orders")}
    assert "ix_orders_tenant_customer" in indexes
