"""The column/field type model shared by every layer: field types, output columns, labels."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

FieldType = Literal["string", "int", "float", "decimal", "bool", "timestamp", "date", "json"]

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
"""Every ``int`` field is a PostgreSQL integer type no wider than bigint."""


@dataclass(frozen=True)
class Column:
    """One output column: its name in the file, human label, type and SQL expression."""

    name: str
    label: str
    type: FieldType
    sql: Any
    """The SQLAlchemy expression that selects it (opaque below the query layer)."""
    precision: int = 18
    scale: int = 2


def human_label(name: str) -> str:
    """``discount_amount_limit`` -> ``Discount Amount Limit``; ``metadata.x`` -> ``Metadata: x``."""
    if name.startswith("metadata."):
        return f"Metadata: {name.removeprefix('metadata.')}"
    return " ".join(
        part.upper() if part in {"id", "qr", "url"} else part.capitalize()
        for part in name.split("_")
    )
