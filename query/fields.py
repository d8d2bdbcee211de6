"""Resolving names of a request against an entity: declared fields and ``metadata.<key>``."""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa

from core.errors import InvalidRequest
from core.types import human_label
from entities import Entity
from entities.catalog import Field

MAX_METADATA_KEY = 200
_METADATA_KEY = re.compile(rf"^[^\x00-\x1f]{{1,{MAX_METADATA_KEY}}}\Z")


def invalid(message: str, key: str, **details: Any) -> InvalidRequest:
    """An ``InvalidRequest`` with a stable key and details (the API's 400 body)."""
    return InvalidRequest(message, key=key, details=details or None)


def allowed(names: Any) -> str:
    return ", ".join(sorted(names))


def metadata_field(entity: Entity, name: str) -> Field | None:
    """``metadata.<key>`` of ``entity`` as a text field, or None if ``name`` is not one.

    The one place a metadata key becomes SQL: ``metadata ->> :key``, the key a bound value.
    """
    key = name.removeprefix("metadata.")
    meta = entity.metadata_column
    if meta is None or key == name or not _METADATA_KEY.match(key):
        return None
    return Field(meta.op("->>")(sa.literal(key, sa.Text)), "string", human_label(name))


def metadata_value(entity: Entity, key: str) -> Any:
    """``metadata -> :key``: the value with its JSON type (numbers stay numbers)."""
    meta = entity.metadata_column
    assert meta is not None
    return meta.op("->")(sa.literal(key, sa.Text))
