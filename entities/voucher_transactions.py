"""Voucher transactions export (seeds/000 "Voucher Transactions Export").

Gift card credit and loyalty card point movements. ``amount`` is signed (removals,
redemptions and expirations are negative); ``details`` is the transaction's JSON object.
"""

from entities.catalog import Entity, Expectation, columns
from entities.tables import voucher_transactions as t

TRANSACTION_TYPES = [
    "CREDITS_REMOVAL",
    "CREDITS_ADDITION",
    "CREDITS_REFUND",
    "CREDITS_REDEMPTION",
    "POINTS_ACCRUAL",
    "POINTS_CANCELLATION",
    "POINTS_REDEMPTION",
    "POINTS_REFUND",
    "POINTS_ADDITION",
    "POINTS_REMOVAL",
    "POINTS_EXPIRATION",
    "POINTS_TRANSFER_IN",
    "POINTS_TRANSFER_OUT",
]

VOUCHER_TRANSACTIONS = Entity(
    name="voucher_transactions",
    plural="voucher_transactions",
    table=t,
    description="Gift card credit and loyalty point transactions of vouchers.",
    fields=columns(
        t,
        "id",
        "source_id",
        "voucher_id",
        "campaign_id",
        "type",
        "status",
        "reason",
        "source",
        "balance",
        "amount",
        "related_transaction_id",
        "created_at",
        "details",
    ),
    default_fields=(
        "id",
        "type",
        "source_id",
        "status",
        "reason",
        "source",
        "balance",
        "amount",
        "created_at",
    ),
    sort_keys=("id", "created_at", "type", "status", "amount", "balance", "voucher_id"),
    default_order="created_at",
    filter_aliases={"campaign_ids": "campaign_id", "voucher_ids": "voucher_id"},
    expectations=(
        Expectation("not_null", "id"),
        Expectation("not_null", "voucher_id"),
        Expectation("in_set", "type", {"values": TRANSACTION_TYPES}),
        Expectation("in_set", "status", {"values": ["SUCCEEDED", "FAILED"]}),
        Expectation("between", "balance", {"min": 0}),
        Expectation("not_null", "created_at"),
    ),
)
