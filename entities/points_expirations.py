"""Points expiration export (seeds/000 "Points Expiration Export"): loyalty point buckets."""

from entities.catalog import Entity, Expectation, columns
from entities.tables import loyalty_point_buckets as b

POINTS_EXPIRATIONS = Entity(
    name="points_expiration",
    plural="points_expirations",
    table=b,
    description="Loyalty point buckets of loyalty cards and when their points expire.",
    fields=columns(
        b, "id", "campaign_id", "voucher_id", "status", "expires_at", "points", "created_at"
    ),
    default_fields=("id", "campaign_id", "voucher_id", "status", "expires_at", "points"),
    sort_keys=("id", "expires_at", "points", "status", "created_at", "voucher_id"),
    default_order="expires_at",
    filter_aliases={"campaign_ids": "campaign_id", "voucher_ids": "voucher_id"},
    expectations=(
        Expectation("not_null", "id"),
        Expectation("not_null", "voucher_id"),
        Expectation("in_set", "status", {"values": ["ACTIVE", "EXPIRED"]}),
        Expectation("between", "points", {"min": 0}),
    ),
)
