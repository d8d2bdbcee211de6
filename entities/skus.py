"""SKU export (seeds/000 "SKU Export"); ``price`` is in cents of ``currency``."""

from entities.catalog import Entity, Expectation, columns
from entities.tables import skus

SKUS = Entity(
    name="sku",
    plural="skus",
    table=skus,
    description="Product variants (SKUs) with currency, price and attributes.",
    fields=columns(
        skus,
        "id",
        "sku",
        "product_id",
        "source_id",
        "currency",
        "price",
        "image_url",
        "attributes",
        "created_at",
        "updated_at",
        "metadata",
    ),
    default_fields=(
        "id",
        "sku",
        "product_id",
        "currency",
        "price",
        "image_url",
        "source_id",
        "attributes",
        "created_at",
    ),
    sort_keys=("id", "sku", "product_id", "source_id", "price", "created_at", "updated_at"),
    default_order="created_at",
    metadata_column=skus.c.metadata,
    filter_aliases={"product_ids": "product_id"},
    expectations=(
        Expectation("not_null", "id"),
        Expectation("not_null", "product_id"),
        Expectation("in_set", "currency", {"values": ["USD", "EUR", "GBP", "PLN", "JPY"]}),
        Expectation("between", "price", {"min": 0}),
    ),
)
