"""Redemption export (seeds/000 "Redemption Export").

``object`` tells a redemption from a rollback (``redemption`` / ``redemption_rollback``);
``order_amount`` is the amount the redemption applied to its order, in cents.
"""

from entities.catalog import Entity, Expectation, col, columns, same_tenant_join
from entities.tables import campaigns, customers, redemptions, vouchers

r = redemptions

REDEMPTIONS = Entity(
    name="redemption",
    plural="redemptions",
    table=r,
    description="Redemptions and rollbacks with their voucher, campaign, customer and result.",
    joins={
        "voucher": same_tenant_join(vouchers, r.c.voucher_id, r.c.tenant_id),
        "campaign": same_tenant_join(campaigns, vouchers.c.campaign_id, r.c.tenant_id),
        "customer": same_tenant_join(customers, r.c.customer_id, r.c.tenant_id),
    },
    fields={
        **columns(r, "id", "object"),
        "voucher_code": col(vouchers.c.code, joins=("voucher",)),
        "voucher_id": col(r.c.voucher_id),
        "campaign": col(campaigns.c.name, joins=("voucher", "campaign")),
        "campaign_id": col(vouchers.c.campaign_id, joins=("voucher",)),
        **columns(r, "promotion_tier_id", "tracking_id", "order_id", "customer_id"),
        "customer_source_id": col(customers.c.source_id, joins=("customer",)),
        "customer_name": col(customers.c.name, joins=("customer",)),
        "order_amount": col(r.c.amount),
        **columns(r, "gift_amount", "loyalty_points", "result", "status"),
        **columns(r, "failure_code", "failure_message", "date", "metadata"),
    },
    default_fields=("id", "object", "voucher_code", "customer_id", "date", "result"),
    sort_keys=("id", "date", "result", "status", "customer_id", "voucher_id", "order_amount"),
    default_order="date",
    metadata_column=r.c.metadata,
    filter_aliases={
        "campaign_ids": "campaign_id",
        "voucher_ids": "voucher_id",
        "customer_ids": "customer_id",
        "created_at": "date",
    },
    expectations=(
        Expectation("not_null", "id"),
        Expectation("match_regex", "id", {"regex": r"^r_"}),
        Expectation("in_set", "object", {"values": ["redemption", "redemption_rollback"]}),
        Expectation("in_set", "result", {"values": ["SUCCESS", "FAILURE"]}),
        Expectation("in_set", "status", {"values": ["SUCCEEDED", "FAILED", "ROLLED_BACK"]}),
        Expectation("between", "order_amount", {"min": 0}),
        Expectation("not_null", "date"),
    ),
)
