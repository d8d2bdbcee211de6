"""The entity catalog: every exportable object, declared once.

Adding an entity: write its declaration in a module here and list it in ``ENTITIES``; the
flow, the deployment in ``prefect.yaml`` and the API validation follow from it
(``tests/test_catalog.py`` proves they stay the same set).
"""

from __future__ import annotations

from core.names import unknown_object
from core.types import FieldType
from entities.catalog import Entity, Expectation, Field, Join
from entities.customers import CUSTOMERS
from entities.orders import ORDERS
from entities.points_expirations import POINTS_EXPIRATIONS
from entities.products import PRODUCTS
from entities.publications import PUBLICATIONS
from entities.redemptions import REDEMPTIONS
from entities.skus import SKUS
from entities.voucher_transactions import VOUCHER_TRANSACTIONS
from entities.vouchers import VOUCHERS

ENTITIES: dict[str, Entity] = {
    e.name: e
    for e in (
        VOUCHERS,
        ORDERS,
        REDEMPTIONS,
        PUBLICATIONS,
        CUSTOMERS,
        PRODUCTS,
        SKUS,
        POINTS_EXPIRATIONS,
        VOUCHER_TRANSACTIONS,
    )
}


def get_entity(name: str) -> Entity:
    """The entity for an ``exported_object`` name, or ``InvalidRequest`` listing the known ones."""
    try:
        return ENTITIES[name]
    except (KeyError, TypeError):
        raise unknown_object(name, ENTITIES) from None


__all__ = ["ENTITIES", "Entity", "Expectation", "Field", "FieldType", "Join", "get_entity"]
