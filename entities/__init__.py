"""The entity catalog: every exportable object, declared once.

Adding an entity: write its declaration in a module here and list it in ``ENTITIES``; the
flow, the deployment in ``prefect.yaml`` and the API validation follow from it
(``tests/test_catalog.py`` proves they stay the same set).
"""

from __future__ import annotations

from entities.catalog import Entity, Expectation, Field, FieldType, Join
from entities.orders import ORDERS
from entities.vouchers import VOUCHERS
from exportflow.errors import InvalidRequest

ENTITIES: dict[str, Entity] = {e.name: e for e in (VOUCHERS, ORDERS)}


def get_entity(name: str) -> Entity:
    """The entity for an ``exported_object`` name, or ``InvalidRequest`` listing the known ones."""
    try:
        return ENTITIES[name]
    except (KeyError, TypeError):
        raise InvalidRequest(
            f"unknown exported_object {name!r}; allowed: {', '.join(sorted(ENTITIES))}",
            key="unknown_exported_object",
            details={"allowed": sorted(ENTITIES)},
        ) from None


__all__ = ["ENTITIES", "Entity", "Expectation", "Field", "FieldType", "Join", "get_entity"]
