"""Resolving names of a request against an entity: declared fields and ``metadata.<key>``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from core.names import METADATA_KEY
from core.types import FieldType, human_label
from entities import Entity
from entities.catalog import Field


def metadata_field(entity: Entity, name: str) -> Field | None:
    """``metadata.<key>`` of ``entity`` as a text field, or None if ``name`` is not one.

    The one place a metadata key becomes SQL: ``metadata ->> :key``, the key a bound value.
    """
    key = name.removeprefix("metadata.")
    meta = entity.metadata_column
    if meta is None or key == name or not METADATA_KEY.match(key):
        return None
    return Field(meta.op("->>")(sa.literal(key, sa.Text)), "string", human_label(name))


def metadata_value(entity: Entity, key: str) -> Any:
    """``metadata -> :key``: the value with its JSON type (numbers stay numbers)."""
    meta = entity.metadata_column
    assert meta is not None
    return meta.op("->")(sa.literal(key, sa.Text))


def metadata_type(json_types: Sequence[str], integral: bool) -> FieldType:
    """The column type of a metadata key from the JSON types of its values in the export.

    Numbers only -> ``int`` (all integral, within int64) or ``float``; booleans only ->
    ``bool``; strings only (or no values) -> ``string``; objects, arrays or a mix -> ``json``.
    JSON ``null`` counts as a missing value.
    """
    kinds = set(json_types) - {"null"}
    if kinds == {"number"}:
        return "int" if integral else "float"
    if kinds == {"boolean"}:
        return "bool"
    if not kinds or kinds == {"string"}:
        return "string"
    return "json"


def typed_metadata_field(entity: Entity, name: str, kind: FieldType) -> Field:
    """``metadata.<key>`` selected as ``kind`` (see ``metadata_type``); filters use the text."""
    text = metadata_field(entity, name)
    assert text is not None
    key = name.removeprefix("metadata.")
    expr: Any
    if kind == "int":
        expr = sa.cast(sa.cast(text.expr, sa.Numeric), sa.BigInteger)  # 5.0 is integral too
    elif kind == "float":
        expr = sa.cast(text.expr, sa.Float(53))
    elif kind == "bool":
        expr = sa.cast(text.expr, sa.Boolean)
    elif kind == "json":
        expr = sa.cast(metadata_value(entity, key), sa.Text)  # each value as its JSON text
    else:
        return text
    return Field(expr, kind, text.label)
