"""Customer export (seeds/000 "Customer Export"), with redemption, order and loyalty aggregates.

Each aggregate is a correlated scalar subquery in its field's expression: PostgreSQL computes
it per exported customer (through the ``(tenant_id, customer_id)`` indexes), only when the
field is selected, filtered or sorted on, and the rows stream out of COPY like any other.

- ``redemptions_total_redeemed``: redemptions (not rollbacks) of the customer; ``_succeeded`` /
  ``_failed`` by result; ``_rolled_back``: redemptions later rolled back; ``_rollback_*``:
  rollbacks by result.
- ``orders_*``: over all the customer's orders, on ``amount`` (cents, before discounts);
  ``orders_average_amount`` is rounded to cents with two decimals, NULL without orders.
- ``loyalty_points``: the balance of the customer's loyalty cards;
  ``loyalty_referred_customers``: customers whose referrer is this customer.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from entities.catalog import Entity, Expectation, Field, columns
from entities.tables import customers, orders, redemptions, vouchers

c = customers
referred = customers.alias("referred")


def _scalar(
    kind: Any, value: ColumnElement[Any], table: sa.FromClause, *where: ColumnElement[bool]
) -> ColumnElement[Any]:
    """``(SELECT value FROM table WHERE tenant = c.tenant AND customer = c.id AND ...)``."""
    query = sa.select(sa.cast(value, kind)).select_from(table).where(*where)
    return query.correlate(c).scalar_subquery()


def _redemptions(*where: ColumnElement[bool]) -> Field:
    expr = _scalar(
        sa.BigInteger,
        sa.func.count(),
        redemptions,
        redemptions.c.tenant_id == c.c.tenant_id,
        redemptions.c.customer_id == c.c.id,
        *where,
    )
    return Field(expr, "int")


def _orders(value: ColumnElement[Any], kind: Any = sa.BigInteger) -> ColumnElement[Any]:
    return _scalar(
        kind, value, orders, orders.c.tenant_id == c.c.tenant_id, orders.c.customer_id == c.c.id
    )


_redemption = redemptions.c.object == "redemption"
_rollback = redemptions.c.object == "redemption_rollback"
_last_order_amount = (
    sa.select(orders.c.amount)
    .where(orders.c.tenant_id == c.c.tenant_id, orders.c.customer_id == c.c.id)
    .order_by(orders.c.created_at.desc(), orders.c.id.desc())
    .limit(1)
    .correlate(c)
    .scalar_subquery()
)

AGGREGATES: dict[str, Field] = {
    "redemptions_total_redeemed": _redemptions(_redemption),
    "redemptions_total_failed": _redemptions(_redemption, redemptions.c.result == "FAILURE"),
    "redemptions_total_succeeded": _redemptions(_redemption, redemptions.c.result == "SUCCESS"),
    "redemptions_total_rolled_back": _redemptions(
        _redemption, redemptions.c.status == "ROLLED_BACK"
    ),
    "redemptions_total_rollback_failed": _redemptions(_rollback, redemptions.c.result == "FAILURE"),
    "redemptions_total_rollback_succeeded": _redemptions(
        _rollback, redemptions.c.result == "SUCCESS"
    ),
    "orders_total_amount": Field(_orders(sa.func.coalesce(sa.func.sum(orders.c.amount), 0)), "int"),
    "orders_total_count": Field(_orders(sa.func.count()), "int"),
    "orders_average_amount": Field(
        _orders(sa.func.round(sa.func.avg(orders.c.amount), 2), sa.Numeric(20, 2)),
        "decimal",
        precision=20,
        scale=2,
    ),
    "orders_last_order_amount": Field(_last_order_amount, "int"),
    "orders_last_order_date": Field(
        _orders(sa.func.max(orders.c.created_at), sa.DateTime(timezone=True)), "timestamp"
    ),
    "loyalty_points": Field(
        _scalar(
            sa.BigInteger,
            sa.func.coalesce(sa.func.sum(vouchers.c.loyalty_balance), 0),
            vouchers,
            vouchers.c.tenant_id == c.c.tenant_id,
            vouchers.c.customer_id == c.c.id,
            vouchers.c.voucher_type == "LOYALTY_CARD",
        ),
        "int",
    ),
    "loyalty_referred_customers": Field(
        _scalar(
            sa.BigInteger,
            sa.func.count(),
            referred,
            referred.c.tenant_id == c.c.tenant_id,
            referred.c.referrer_id == c.c.id,
        ),
        "int",
    ),
}

CUSTOMERS = Entity(
    name="customer",
    plural="customers",
    table=c,
    description="Customers with address, dates and redemption/order/loyalty aggregates.",
    fields={
        **columns(
            c,
            "id",
            "source_id",
            "name",
            "email",
            "description",
            "phone",
            "address_city",
            "address_state",
            "address_line_1",
            "address_line_2",
            "address_country",
            "address_postal_code",
            "created_at",
            "updated_at",
            "birthday",
            "birthdate",
            "referrer_id",
        ),
        **AGGREGATES,
        **columns(c, "metadata"),
    },
    default_fields=("name", "source_id"),
    sort_keys=("id", "source_id", "name", "email", "created_at", "updated_at"),
    default_order="created_at",
    metadata_column=c.c.metadata,
    filter_aliases={"customer_ids": "id", "referrer_ids": "referrer_id"},
    expectations=(
        Expectation("not_null", "id"),
        Expectation("match_regex", "email", {"regex": r"^[^@\s]+@[^@\s]+$"}),
        *(Expectation("between", name, {"min": 0}) for name in AGGREGATES if "_date" not in name),
    ),
)
