"""Product export (seeds/000 "Product Export"); ``price`` is in cents."""

from entities.catalog import Entity, Expectation, columns
from entities.tables import products

PRODUCTS = Entity(
    name="product",
    plural="products",
    table=products,
    description="Products with price, image and attributes.",
    fields=columns(
        products,
        "id",
        "source_id",
        "name",
        "price",
        "image_url",
        "attributes",
        "created_at",
        "updated_at",
        "metadata",
    ),
    default_fields=("id", "name", "price", "image_url", "source_id", "attributes", "created_at"),
    sort_keys=("id", "source_id", "name", "price", "created_at", "updated_at"),
    default_order="created_at",
    metadata_column=products.c.metadata,
    filter_aliases={"product_ids": "id"},
    expectations=(
        Expectation("not_null", "id"),
        Expectation("between", "price", {"min": 0}),
        Expectation("match_regex", "image_url", {"regex": r"^https://"}),
        Expectation("not_null", "created_at"),
    ),
)
