"""Publication export (seeds/000 "Publication Export"): a voucher handed to a customer.

``code`` and ``voucher_code`` are the same column under both of Voucherify's names.
"""

from entities.catalog import Entity, Expectation, col, columns, same_tenant_join
from entities.tables import campaigns, customers, publications, vouchers

p = publications

PUBLICATIONS = Entity(
    name="publication",
    plural="publications",
    table=p,
    description="Vouchers published to customers, with channel and campaign.",
    joins={
        "voucher": same_tenant_join(vouchers, p.c.voucher_id, p.c.tenant_id),
        "campaign": same_tenant_join(campaigns, vouchers.c.campaign_id, p.c.tenant_id),
        "customer": same_tenant_join(customers, p.c.customer_id, p.c.tenant_id),
    },
    fields={
        "id": col(p.c.id),
        "code": col(vouchers.c.code, joins=("voucher",)),
        "voucher_code": col(vouchers.c.code, joins=("voucher",)),
        "voucher_id": col(p.c.voucher_id),
        "campaign": col(campaigns.c.name, joins=("voucher", "campaign")),
        "campaign_id": col(vouchers.c.campaign_id, joins=("voucher",)),
        "customer_id": col(p.c.customer_id),
        "customer_source_id": col(customers.c.source_id, joins=("customer",)),
        **columns(p, "date", "channel", "is_winner", "metadata"),
    },
    default_fields=("code", "customer_id", "date", "channel"),
    sort_keys=("id", "date", "channel", "customer_id", "voucher_id", "code"),
    default_order="date",
    metadata_column=p.c.metadata,
    filter_aliases={
        "campaign_ids": "campaign_id",
        "voucher_ids": "voucher_id",
        "customer_ids": "customer_id",
        "created_at": "date",
    },
    expectations=(
        Expectation("not_null", "id"),
        Expectation("not_null", "date"),
        Expectation(
            "in_set", "channel", {"values": ["API", "voucherify-website", "Automation", "Email"]}
        ),
    ),
)
