"""The sample application database: the loyalty/promotions domain of seeds/000.

These tables stand in for the application's own; exportflow only reads them. Every table
carries ``tenant_id`` (the one foreign key kept: references between sample tables are loose,
as in many application databases, so reseeding a tenant stays a fast bulk delete); ids are
text (``v_...``, ``ord_...``) as in Voucherify.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

metadata = sa.MetaData()

TS = sa.DateTime(timezone=True)


def _tenant() -> sa.Column[str]:
    return sa.Column("tenant_id", sa.Text, sa.ForeignKey("tenants.id"), nullable=False)


def _created() -> sa.Column[Any]:
    return sa.Column("created_at", TS, nullable=False, server_default=sa.func.now())


def _meta() -> sa.Column[Any]:
    return sa.Column("metadata", JSONB, nullable=True)


tenants = sa.Table(
    "tenants",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    _created(),
)

campaigns = sa.Table(
    "campaigns",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    _tenant(),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("campaign_type", sa.Text, nullable=False),
    sa.Column("category", sa.Text),
    sa.Column("category_id", sa.Text),
    _created(),
    _meta(),
)

customers = sa.Table(
    "customers",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    _tenant(),
    sa.Column("source_id", sa.Text),
    sa.Column("name", sa.Text),
    sa.Column("email", sa.Text),
    sa.Column("description", sa.Text),
    sa.Column("phone", sa.Text),
    sa.Column("address_city", sa.Text),
    sa.Column("address_state", sa.Text),
    sa.Column("address_line_1", sa.Text),
    sa.Column("address_line_2", sa.Text),
    sa.Column("address_country", sa.Text),
    sa.Column("address_postal_code", sa.Text),
    sa.Column("birthdate", sa.Date),
    sa.Column("birthday", sa.Date),
    sa.Column("referrer_id", sa.Text),
    _created(),
    sa.Column("updated_at", TS),
    _meta(),
)

vouchers = sa.Table(
    "vouchers",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    _tenant(),
    sa.Column("code", sa.Text, nullable=False),
    sa.Column("campaign_id", sa.Text),
    sa.Column("category", sa.Text),
    sa.Column("category_id", sa.Text),
    sa.Column("voucher_type", sa.Text, nullable=False),
    sa.Column("value", sa.Numeric(14, 2)),
    sa.Column("discount_type", sa.Text),
    sa.Column("discount_amount_limit", sa.BigInteger),
    sa.Column("discount_unit_type", sa.Text),
    sa.Column("discount_unit_effect", sa.Text),
    sa.Column("gift_balance", sa.BigInteger),
    sa.Column("loyalty_balance", sa.BigInteger),
    sa.Column("redemption_quantity", sa.Integer),
    sa.Column("redemption_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("start_date", TS),
    sa.Column("expiration_date", TS),
    sa.Column("validity_timeframe_interval", sa.Text),
    sa.Column("validity_timeframe_duration", sa.Text),
    sa.Column("validity_day_of_week", ARRAY(sa.SmallInteger)),
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("is_referral_code", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("qr_code", sa.Text),
    sa.Column("bar_code", sa.Text),
    sa.Column("customer_id", sa.Text),
    sa.Column("additional_info", sa.Text),
    _created(),
    sa.Column("updated_at", TS),
    _meta(),
    sa.UniqueConstraint("tenant_id", "code"),
)

orders = sa.Table(
    "orders",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    _tenant(),
    sa.Column("source_id", sa.Text),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("amount", sa.BigInteger),
    sa.Column("discount_amount", sa.BigInteger),
    sa.Column("items_discount_amount", sa.BigInteger),
    sa.Column("total_discount_amount", sa.BigInteger),
    sa.Column("total_amount", sa.BigInteger),
    sa.Column("customer_id", sa.Text),
    sa.Column("referrer_id", sa.Text),
    _created(),
    sa.Column("updated_at", TS),
    _meta(),
)

redemptions = sa.Table(
    "redemptions",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    _tenant(),
    sa.Column("object", sa.Text, nullable=False, server_default="redemption"),
    sa.Column("voucher_id", sa.Text),
    sa.Column("order_id", sa.Text),
    sa.Column("customer_id", sa.Text),
    sa.Column("promotion_tier_id", sa.Text),
    sa.Column("tracking_id", sa.Text),
    sa.Column("amount", sa.BigInteger),
    sa.Column("gift_amount", sa.BigInteger),
    sa.Column("loyalty_points", sa.BigInteger),
    sa.Column("result", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("failure_code", sa.Text),
    sa.Column("failure_message", sa.Text),
    sa.Column("date", TS, nullable=False),
    _meta(),
)

publications = sa.Table(
    "publications",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    _tenant(),
    sa.Column("voucher_id", sa.Text),
    sa.Column("customer_id", sa.Text),
    sa.Column("channel", sa.Text),
    sa.Column("is_winner", sa.Boolean),
    sa.Column("date", TS, nullable=False),
    _meta(),
)

products = sa.Table(
    "products",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    _tenant(),
    sa.Column("source_id", sa.Text),
    sa.Column("name", sa.Text),
    sa.Column("price", sa.BigInteger),
    sa.Column("image_url", sa.Text),
    sa.Column("attributes", ARRAY(sa.Text)),
    _created(),
    sa.Column("updated_at", TS),
    _meta(),
)

skus = sa.Table(
    "skus",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    _tenant(),
    sa.Column("sku", sa.Text),
    sa.Column("product_id", sa.Text, nullable=False),
    sa.Column("source_id", sa.Text),
    sa.Column("currency", sa.Text),
    sa.Column("price", sa.BigInteger),
    sa.Column("image_url", sa.Text),
    sa.Column("attributes", JSONB),
    _created(),
    sa.Column("updated_at", TS),
    _meta(),
)

loyalty_point_buckets = sa.Table(
    "loyalty_point_buckets",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    _tenant(),
    sa.Column("voucher_id", sa.Text, nullable=False),
    sa.Column("campaign_id", sa.Text),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("points", sa.BigInteger, nullable=False),
    sa.Column("expires_at", TS),
    _created(),
)

voucher_transactions = sa.Table(
    "voucher_transactions",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    _tenant(),
    sa.Column("source_id", sa.Text),
    sa.Column("voucher_id", sa.Text, nullable=False),
    sa.Column("campaign_id", sa.Text),
    sa.Column("type", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("source", sa.Text),
    sa.Column("reason", sa.Text),
    sa.Column("amount", sa.BigInteger),
    sa.Column("balance", sa.BigInteger),
    sa.Column("related_transaction_id", sa.Text),
    sa.Column("details", JSONB),
    _created(),
)

# Indexes an export needs: tenant scoping plus the default sort key, with id as tie-breaker.
for _table in (
    campaigns,
    customers,
    vouchers,
    orders,
    products,
    skus,
    loyalty_point_buckets,
    voucher_transactions,
):
    sa.Index(
        f"ix_{_table.name}_tenant_created", _table.c.tenant_id, _table.c.created_at, _table.c.id
    )
for _table in (redemptions, publications):
    sa.Index(f"ix_{_table.name}_tenant_date", _table.c.tenant_id, _table.c.date, _table.c.id)
sa.Index("ix_vouchers_tenant_campaign", vouchers.c.tenant_id, vouchers.c.campaign_id)
sa.Index(
    "ix_loyalty_point_buckets_tenant_expires",
    loyalty_point_buckets.c.tenant_id,
    loyalty_point_buckets.c.expires_at,
    loyalty_point_buckets.c.id,
)
# Lookups of the customer aggregates (correlated subqueries per exported customer).
sa.Index("ix_orders_tenant_customer", orders.c.tenant_id, orders.c.customer_id)
sa.Index("ix_redemptions_tenant_customer", redemptions.c.tenant_id, redemptions.c.customer_id)
sa.Index("ix_vouchers_tenant_customer", vouchers.c.tenant_id, vouchers.c.customer_id)
sa.Index("ix_customers_tenant_referrer", customers.c.tenant_id, customers.c.referrer_id)
