"""Order export (seeds/000 "Order Export")."""

from entities.catalog import Entity, Expectation, columns
from entities.tables import orders

ORDERS = Entity(
    name="order",
    plural="orders",
    table=orders,
    description="Orders with their amounts, discounts, customer and referrer.",
    fields={
        **columns(
            orders,
            "id",
            "source_id",
            "status",
            "amount",
            "discount_amount",
            "items_discount_amount",
            "total_discount_amount",
            "total_amount",
            "created_at",
            "updated_at",
            "customer_id",
            "referrer_id",
            "metadata",
        ),
    },
    default_fields=("id", "source_id", "status"),
    sort_keys=("id", "source_id", "created_at", "updated_at", "amount", "total_amount", "status"),
    default_order="created_at",
    metadata_column=orders.c.metadata,
    filter_aliases={"customer_ids": "customer_id"},
    expectations=(
        Expectation("not_null", "id"),
        Expectation("in_set", "status", {"values": ["CREATED", "PAID", "CANCELED", "FULFILLED"]}),
        Expectation("between", "amount", {"min": 0}),
        Expectation("between", "total_amount", {"min": 0}),
        Expectation("not_null", "created_at"),
    ),
)
