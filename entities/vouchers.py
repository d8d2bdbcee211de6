"""Voucher export (seeds/000 "Voucher Export")."""

from entities.catalog import Entity, Expectation, col, columns, same_tenant_join
from entities.tables import campaigns, customers, vouchers

VOUCHERS = Entity(
    name="voucher",
    plural="vouchers",
    table=vouchers,
    description="Discount, gift and loyalty codes with their campaign, balances and validity.",
    joins={
        "campaign": same_tenant_join(campaigns, vouchers.c.campaign_id, vouchers.c.tenant_id),
        "customer": same_tenant_join(customers, vouchers.c.customer_id, vouchers.c.tenant_id),
    },
    fields={
        **columns(vouchers, "id", "code"),
        "campaign": col(campaigns.c.name, joins=("campaign",)),
        **columns(vouchers, "campaign_id", "category", "category_id", "voucher_type", "value"),
        **columns(
            vouchers,
            "discount_type",
            "discount_amount_limit",
            "discount_unit_type",
            "discount_unit_effect",
            "gift_balance",
            "loyalty_balance",
            "redemption_quantity",
            "redemption_count",
            "start_date",
            "expiration_date",
            "created_at",
            "updated_at",
            "validity_timeframe_interval",
            "validity_timeframe_duration",
            "validity_day_of_week",
            "active",
            "is_referral_code",
            "qr_code",
            "bar_code",
            "customer_id",
        ),
        "customer_source_id": col(customers.c.source_id, joins=("customer",)),
        "metadata": col(vouchers.c.metadata),
        "additional_info": col(vouchers.c.additional_info),
    },
    default_fields=("code", "voucher_type", "value", "discount_type"),
    sort_keys=("id", "code", "created_at", "updated_at", "expiration_date", "value", "campaign_id"),
    default_order="created_at",
    metadata_column=vouchers.c.metadata,
    filter_aliases={
        "campaign_ids": "campaign_id",
        "campaign_name": "campaign",
        "customer_ids": "customer_id",
    },
    expectations=(
        Expectation("not_null", "id"),
        Expectation("not_null", "code"),
        Expectation(
            "in_set",
            "voucher_type",
            {"values": ["DISCOUNT_VOUCHER", "GIFT_VOUCHER", "LOYALTY_CARD"]},
        ),
        Expectation("in_set", "discount_type", {"values": ["AMOUNT", "PERCENT", "UNIT", "FIXED"]}),
        Expectation("between", "value", {"min": 0}),
        Expectation("between", "redemption_count", {"min": 0}),
        Expectation("not_null", "created_at"),
    ),
)
