"""Export parameters on every entity: operators, junctions, metadata, order, injection.

Operators are checked through the real extract (plan -> COPY -> Arrow, no Prefect) against
hand-written SQL; junctions, order and injection attempts run real flows.
"""

from __future__ import annotations

import re
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

from core.errors import InvalidRequest
from entities import ENTITIES, get_entity
from flows.exports import FLOWS
from query.filters import ALL_OPERATORS
from query.plan import plan_export
from query.sql import copy_sql
from tasks.extract import open_extract
from tests.helpers import export, read_csv, run_failing, sql_rows

TABLES = {
    "voucher": "vouchers",
    "order": "orders",
    "redemption": "redemptions",
    "publication": "publications",
    "customer": "customers",
    "product": "products",
    "sku": "skus",
    "points_expiration": "loyalty_point_buckets",
    "voucher_transactions": "voucher_transactions",
}


def exported_ids(engine: sa.Engine, entity: str, filters: dict[str, Any]) -> list[str]:
    """The ids an export of ``entity`` for tenant demo with ``filters`` reads, in order."""
    plan = plan_export(ENTITIES[entity], "demo", {"fields": ["id"], "filters": filters})
    with open_extract(engine, plan, 1 << 20) as extract:
        return [v for batch in extract.batches for v in batch.column(0).to_pylist()]


def sql_ids(pg: psycopg.Connection, entity: str, where: str) -> list[str]:
    table = TABLES[entity]
    query = f"SELECT id FROM {table} t WHERE tenant_id = 'demo' AND ({where})"
    return sorted(r[0] for r in sql_rows(pg, query))


def cond(field: str, op: str, value: Any) -> dict[str, Any]:
    return {field: {"conditions": {op: value}}}


CUSTOMER_ORDERS = "(SELECT count(*) FROM orders o WHERE o.customer_id = t.id)"
CUSTOMER_AVERAGE = "(SELECT avg(amount) FROM orders o WHERE o.customer_id = t.id)"

OPERATOR_CASES = [
    ("$in", "redemption", cond("result", "$in", ["FAILURE"]), "result = 'FAILURE'"),
    (
        "$not_in",
        "publication",
        cond("channel", "$not_in", ["API", "Email"]),
        "channel IS NULL OR channel NOT IN ('API', 'Email')",
    ),
    ("$is", "order", cond("status", "$is", "PAID"), "status = 'PAID'"),
    (
        "$is_not",
        "voucher",
        cond("discount_type", "$is_not", "AMOUNT"),
        "discount_type IS DISTINCT FROM 'AMOUNT'",
    ),
    ("$has_value", "customer", cond("email", "$has_value", True), "email IS NOT NULL"),
    (
        "$is_unknown",
        "redemption",
        cond("customer_id", "$is_unknown", True),
        "customer_id IS NULL",
    ),
    ("$starts_with", "voucher", cond("code", "$starts_with", "=SUM-"), "left(code, 5) = '=SUM-'"),
    ("$ends_with", "customer", cond("name", "$ends_with", "Jr."), "right(name, 3) = 'Jr.'"),
    (
        "$contains",
        "voucher",
        cond("additional_info", "$contains", "10%"),
        "strpos(additional_info, '10%') > 0",
    ),
    (
        "$not_contain",
        "voucher_transactions",
        cond("reason", "$not_contain", "e"),
        "reason IS NULL OR strpos(reason, 'e') = 0",
    ),
    (
        "$after",
        "redemption",
        cond("date", "$after", "2025-06-01T00:00:00Z"),
        "date > '2025-06-01T00:00:00Z'",
    ),
    (
        "$before",
        "points_expiration",
        cond("expires_at", "$before", "2025-09-01"),
        "expires_at < '2025-09-01T00:00:00Z'",
    ),
    (
        "$more_than",
        "customer",
        cond("orders_total_count", "$more_than", 5),
        f"{CUSTOMER_ORDERS} > 5",
    ),
    ("$less_than", "voucher_transactions", cond("amount", "$less_than", 0), "amount < 0"),
]


def test_every_operator_has_a_case() -> None:
    assert sorted({case[0] for case in OPERATOR_CASES}) == ALL_OPERATORS


@pytest.mark.parametrize(
    ("operator", "entity", "filters", "where"), OPERATOR_CASES, ids=[c[0] for c in OPERATOR_CASES]
)
def test_operator_selects_exactly_the_matching_rows(
    operator: str,
    entity: str,
    filters: dict[str, Any],
    where: str,
    engine: sa.Engine,
    pg: psycopg.Connection,
) -> None:
    got = exported_ids(engine, entity, filters)
    expected = sql_ids(pg, entity, where)
    total = sql_rows(pg, f"SELECT count(*) FROM {TABLES[entity]} WHERE tenant_id = 'demo'")[0][0]
    assert sorted(got) == expected
    assert 0 < len(expected) < total, "the case must select some rows, not all"


MORE_CASES = [
    (
        "redemption",
        cond("campaign_ids", "$in", ["camp_demo_00000003", "camp_demo_00000004"]),
        "voucher_id IN (SELECT id FROM vouchers"
        " WHERE campaign_id IN ('camp_demo_00000003', 'camp_demo_00000004'))",
    ),
    ("redemption", cond("created_at", "$before", "2025-04-01"), "date < '2025-04-01'"),
    (
        "points_expiration",
        cond("campaign_ids", "$in", ["camp_demo_00000003"]),
        "campaign_id = 'camp_demo_00000003'",
    ),
    (
        "sku",
        cond("product_ids", "$in", ["prod_demo_00000007"]),
        "product_id = 'prod_demo_00000007'",
    ),
    ("publication", cond("is_winner", "$is", True), "is_winner"),
    (
        "publication",
        cond("code", "$starts_with", "VIP-"),
        "voucher_id IN (SELECT id FROM vouchers WHERE code LIKE 'VIP-%')",
    ),
    ("customer", cond("birthdate", "$after", "1990-01-01"), "birthdate > '1990-01-01'"),
    (
        "customer",
        cond("orders_average_amount", "$less_than", "40000.5"),
        f"round({CUSTOMER_AVERAGE}, 2) < 40000.5",
    ),
    ("customer", cond("metadata.tier", "$in", ["1", "2"]), "metadata->>'tier' IN ('1', '2')"),
    ("order", cond("amount", "$less_than", "1000"), "amount < 1000"),
    ("product", cond("attributes", "$is_unknown", True), "attributes IS NULL"),
    ("sku", cond("metadata.bin", "$is", "3"), "metadata->>'bin' = '3'"),
    (
        "voucher_transactions",
        cond("type", "$in", ["POINTS_EXPIRATION", "CREDITS_REFUND"]),
        "type IN ('POINTS_EXPIRATION', 'CREDITS_REFUND')",
    ),
]


@pytest.mark.parametrize(("entity", "filters", "where"), MORE_CASES)
def test_aliases_joins_metadata_and_typed_values_filter_like_sql(
    entity: str, filters: dict[str, Any], where: str, engine: sa.Engine, pg: psycopg.Connection
) -> None:
    got = exported_ids(engine, entity, filters)
    expected = sql_ids(pg, entity, where)
    assert sorted(got) == expected
    assert expected


@pytest.mark.usefixtures("exports")
def test_or_junction_matches_either_condition_and_stays_in_the_tenant(
    pg: psycopg.Connection,
) -> None:
    job = export(
        FLOWS["voucher"],
        tenant="demo",
        fields=["id", "voucher_type", "metadata.region"],
        filters={
            "junction": "or",
            "voucher_type": {"conditions": {"$is": "GIFT_VOUCHER"}},
            "metadata.region": {"conditions": {"$is": "UK"}},
        },
    )
    _, rows = read_csv(job["result"]["location"])
    expected = sql_rows(
        pg,
        "SELECT id, voucher_type, coalesce(metadata->>'region', '') FROM vouchers"
        " WHERE tenant_id = 'demo' AND (voucher_type = 'GIFT_VOUCHER'"
        " OR metadata->>'region' = 'UK') ORDER BY created_at, id",
    )
    assert rows == [list(r) for r in expected]
    assert all(r[0].startswith("v_demo_") for r in rows)
    assert {r[1] for r in rows} > {"GIFT_VOUCHER"} and {r[2] for r in rows} > {"UK"}


@pytest.mark.usefixtures("exports")
def test_and_junction_with_an_inner_or_on_one_field(pg: psycopg.Connection) -> None:
    job = export(
        FLOWS["redemption"],
        tenant="demo",
        fields=["id", "result", "customer_name"],
        order="-date",
        filters={
            "junction": "and",
            "result": {"conditions": {"$is": "SUCCESS"}},
            "date": {
                "junction": "or",
                "conditions": {"$before": "2025-03-01", "$after": "2025-11-01T00:00:00Z"},
            },
            "customer_name": {"conditions": {"$has_value": True}},
        },
    )
    _, rows = read_csv(job["result"]["location"])
    expected = sql_rows(
        pg,
        "SELECT r.id FROM redemptions r JOIN customers c ON c.id = r.customer_id"
        " WHERE r.tenant_id = 'demo' AND r.result = 'SUCCESS' AND c.name IS NOT NULL"
        " AND (r.date < '2025-03-01' OR r.date > '2025-11-01') ORDER BY r.date DESC, r.id DESC",
    )
    assert [r[0] for r in rows] == [r[0] for r in expected]
    assert expected and {r[1] for r in rows} == {"SUCCESS"}


@pytest.mark.usefixtures("exports")
@pytest.mark.parametrize(
    ("entity", "key", "sql_key"),
    [
        ("redemption", "result", "result"),
        ("points_expiration", "status", "status"),
        ("voucher_transactions", "type", "type"),
        ("customer", "name", "name"),
    ],
)
def test_order_on_repeated_values_uses_id_as_tie_breaker(
    entity: str, key: str, sql_key: str, pg: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many rows share each sort value; with small chunks no row is skipped or repeated."""
    monkeypatch.setenv("EXPORTFLOW_CHUNK_BYTES", str(1 << 16))
    table = TABLES[entity]
    for descending in (False, True):
        job = export(
            FLOWS[entity],
            tenant="demo",
            fields=["id", key],
            order=("-" if descending else "") + key,
        )
        _, rows = read_csv(job["result"]["location"])
        direction = "DESC" if descending else "ASC"
        expected = sql_rows(
            pg,
            f"SELECT id FROM {table} WHERE tenant_id = 'demo'"
            f" ORDER BY {sql_key} {direction}, id {direction}",
        )
        assert [r[0] for r in rows] == [r[0] for r in expected]
        assert len({r[1] for r in rows}) < len(rows) / 10  # many equal values


def _row_counts(pg: psycopg.Connection) -> dict[str, int]:
    tables = [*TABLES.values(), "campaigns", "tenants"]
    return {t: sql_rows(pg, f"SELECT count(*) FROM {t}")[0][0] for t in tables}


@pytest.mark.usefixtures("exports")
def test_injection_attempts_are_rejected_or_match_nothing_and_change_nothing(
    pg: psycopg.Connection,
) -> None:
    before = _row_counts(pg)

    rejected = [
        ("voucher", {"fields": ["code; DROP TABLE vouchers"]}, "unknown field"),
        ("order", {"fields": ["id", 'source_id" FROM orders; DELETE FROM orders; --']}, "unknown"),
        ("customer", {"order": "name; DROP TABLE customers"}, "cannot order customer exports"),
        ("redemption", {"order": "-date, (SELECT 1)"}, "cannot order redemption exports"),
        (
            "publication",
            {"filters": {"channel) OR 1=1 --": {"conditions": {"$is": "x"}}}},
            "cannot filter publication exports by",
        ),
        (
            "sku",
            {"filters": {"price": {"conditions": {"$more_than": "0; DROP TABLE skus"}}}},
            "is not an integer",
        ),
        (
            "product",
            {"filters": {"created_at": {"conditions": {"$after": "now(); DROP TABLE products"}}}},
            "now(); DROP TABLE products",
        ),
    ]
    for i, (entity, params, message) in enumerate(rejected):
        if i < 3:  # a few through the flow (the job row says why); the rest at validation
            job, exc = run_failing(FLOWS[entity], tenant="demo", **params)
            assert isinstance(exc, InvalidRequest), entity
            assert job.status == "ERROR" and message in (job.error or ""), job.error
            assert job.total is None and job.result is None
        else:
            with pytest.raises(InvalidRequest, match=re.escape(message)):
                plan_export(ENTITIES[entity], "demo", params)

    matching_nothing = [
        ("order", {"source_id": {"conditions": {"$is": "'; DELETE FROM orders; --"}}}),
        (
            "voucher",
            {"code": {"conditions": {"$in": ["x' OR '1'='1", "'); DROP TABLE vouchers;--"]}}},
        ),
        ("customer", {"name": {"conditions": {"$contains": "%' OR 1=1; --"}}}),
        ("redemption", {"metadata.x'; DROP TABLE redemptions; --": {"conditions": {"$is": "1"}}}),
    ]
    for entity, filters in matching_nothing:
        job = export(FLOWS[entity], tenant="demo", fields=["id"], filters=filters)
        assert job["status"] == "DONE" and job["result"]["row_count"] == 0, entity

    assert _row_counts(pg) == before


def test_customer_aggregates_are_only_computed_when_selected(engine: sa.Engine) -> None:
    customer = ENTITIES["customer"]
    plain = plan_export(customer, "demo", {"fields": ["id", "name"]})
    sql, _ = copy_sql(engine.dialect, plain, plain.columns())
    assert "orders" not in sql and "redemptions" not in sql

    rich = plan_export(customer, "demo", {"fields": ["id", "orders_total_amount"]})
    sql, _ = copy_sql(engine.dialect, rich, rich.columns())
    assert "FROM orders" in sql and "redemptions" not in sql


# Pure validation: no rows needed.


@pytest.mark.parametrize("entity", sorted(TABLES))
def test_unknown_names_are_rejected_naming_them_and_the_allowed_ones(entity: str) -> None:
    declared = ENTITIES[entity]
    with pytest.raises(InvalidRequest) as field_error:
        plan_export(declared, "demo", {"fields": ["id", "secret"]})
    assert "'secret'" in str(field_error.value)
    assert all(name in str(field_error.value) for name in declared.fields)

    with pytest.raises(InvalidRequest) as order_error:
        plan_export(declared, "demo", {"order": "-secret"})
    assert "'-secret'" in str(order_error.value)
    assert all(key in str(order_error.value) for key in declared.sort_keys)

    with pytest.raises(InvalidRequest) as filter_error:
        plan_export(declared, "demo", {"filters": cond("secret", "$is", "x")})
    assert "'secret'" in str(filter_error.value)
    assert all(alias in str(filter_error.value) for alias in declared.filter_aliases)


def test_unknown_exported_object_lists_the_nine_entities() -> None:
    with pytest.raises(InvalidRequest) as info:
        get_entity("loyalty_card")
    assert "'loyalty_card'" in str(info.value)
    assert all(name in str(info.value) for name in TABLES)


@pytest.mark.parametrize(
    ("entity", "params", "message"),
    [
        ("points_expiration", {"fields": ["id", "metadata"]}, "unknown field 'metadata'"),
        ("voucher_transactions", {"fields": ["metadata.x"]}, "unknown field 'metadata.x'"),
        ("customer", {"fields": ["name", "email", "name"]}, "'name' is listed twice"),
        ("customer", {"fields": []}, "leave it out for the defaults (name, source_id)"),
        ("customer", {"order": "orders_total_amount"}, "cannot order customer exports"),
        ("product", {"filters": cond("attributes", "$in", ["x"])}, "allowed: $has_value"),
        ("sku", {"filters": cond("price", "$starts_with", "1")}, "'$starts_with' is not for int"),
        ("redemption", {"filters": cond("result", "$like", "S%")}, "'$like' is unknown operator"),
        ("customer", {"filters": cond("orders_total_count", "$more_than", "many")}, "'many'"),
        ("customer", {"filters": cond("birthdate", "$after", "yesterday-ish")}, "birthdate"),
        ("redemption", {"filters": cond("campaign_ids", "$in", [])}, "non-empty list"),
        ("publication", {"filters": cond("is_winner", "$is", "maybe")}, "'maybe' is not true"),
        ("order", {"filters": {"junction": "xor"}}, "must be 'and' or 'or', got 'xor'"),
        ("voucher", {"filters": cond("value", "$less_than", "NaN")}, "'NaN' is not a finite"),
        ("sku", {"fields": ["id"], "sort": "id"}, "unknown parameter"),
        ("order", {"filters": cond("status", "$has_value", "PAID")}, "got 'PAID'; allowed: true"),
        ("voucher", {"filters": cond("customer_ids", "$in", "cust_1")}, "got 'cust_1'"),
    ],
)
def test_bad_values_are_rejected_before_reading(
    entity: str, params: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidRequest) as info:
        plan_export(ENTITIES[entity], "demo", params)
    assert message in str(info.value)


def test_fields_keep_the_order_given() -> None:
    fields = ["loyalty_points", "id", "metadata.tier", "orders_last_order_date", "name"]
    plan = plan_export(ENTITIES["customer"], "demo", {"fields": fields})
    assert [c.name for c in plan.columns()] == fields
