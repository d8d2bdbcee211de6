"""How an entity is declared: one frozen ``Entity`` per exported object.

An entity says where its rows live (a table plus optional named joins), which fields exist and
the SQL expression of each, the defaults, the sort keys, the filter aliases and the
expectations. Everything else (flows, deployments, request validation, docs) is derived.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from pydantic import Field as ParamField
from pydantic import WithJsonSchema, create_model
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.sql.elements import ColumnElement

from core.names import METADATA_KEY_PATTERN, EntityNames
from core.params import ExportParameters
from core.types import FieldType

InvalidPolicy = Literal["fail", "report"]


@dataclass(frozen=True)
class Field:
    """One exportable field: its SQL expression, type and the joins the expression needs."""

    expr: ColumnElement[Any]
    type: FieldType
    label: str = ""
    joins: tuple[str, ...] = ()
    precision: int = 18
    scale: int = 2
    filterable: bool = True

    def sql(self) -> ColumnElement[Any]:
        """The expression as COPY should render it (json/arrays as their JSON text)."""
        if self.type != "json":
            return self.expr
        if isinstance(self.expr.type, ARRAY):
            return sa.cast(sa.func.array_to_json(self.expr), sa.Text)
        return sa.cast(self.expr, sa.Text)


@dataclass(frozen=True)
class Join:
    """A table joined in only when a selected field, filter or sort key needs it."""

    table: sa.FromClause
    onclause: ColumnElement[bool]


def same_tenant_join(table: sa.Table, key: ColumnElement[Any], tenant: ColumnElement[Any]) -> Join:
    """Join ``table`` where its ``id`` is ``key`` and its tenant is ``tenant``'s."""
    return Join(table, sa.and_(table.c.id == key, table.c.tenant_id == tenant))


@dataclass(frozen=True)
class Expectation:
    """A data-quality rule on one field, run by Great Expectations on each chunk."""

    kind: Literal["not_null", "in_set", "between", "match_regex"]
    column: str
    args: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Entity:
    name: str
    """``exported_object`` on the wire, e.g. ``voucher``."""
    plural: str
    """Names the flow (``export_<plural>``) and the deployment."""
    table: sa.Table
    fields: Mapping[str, Field]
    default_fields: tuple[str, ...]
    sort_keys: tuple[str, ...]
    default_order: str
    joins: Mapping[str, Join] = field(default_factory=dict)
    metadata_column: ColumnElement[Any] | None = None
    """The jsonb column behind ``metadata`` and ``metadata.<key>``; None = no metadata."""
    filter_aliases: Mapping[str, str] = field(default_factory=dict)
    """Extra filter names mapped to a field, e.g. ``campaign_ids`` -> ``campaign_id``."""
    expectations: tuple[Expectation, ...] = ()
    on_invalid: InvalidPolicy = "fail"
    description: str = ""

    @property
    def key(self) -> ColumnElement[Any]:
        """The unique tie-breaker under every sort, so chunks never skip or repeat rows."""
        return self.table.c.id

    @property
    def tenant_column(self) -> ColumnElement[str]:
        return self.table.c.tenant_id

    @property
    def flow_name(self) -> str:
        return f"export-{self.plural.replace('_', '-')}"

    @cached_property
    def names(self) -> EntityNames:
        """What a request may name of this entity, and the checks of ``fields`` and ``order``."""
        return EntityNames(
            name=self.name,
            plural=self.plural,
            fields=tuple(self.fields),
            default_fields=self.default_fields,
            sort_keys=self.sort_keys,
            default_order=self.default_order,
            metadata=self.metadata_column is not None,
        )

    @cached_property
    def parameters_model(self) -> type[ExportParameters]:
        """``ExportParameters`` with this entity's fields and sort keys as enums (the run form)."""
        names: dict[str, Any] = {"type": "string", "enum": list(self.fields)}
        item = names
        if self.metadata_column is not None:
            meta = {"type": "string", "pattern": METADATA_KEY_PATTERN, "title": "metadata.<key>"}
            item = {"anyOf": [names, meta]}
        orders = [key for name in self.sort_keys for key in (name, f"-{name}")]
        default_fields = ", ".join(self.default_fields)
        order_type: Any = Annotated[str, WithJsonSchema({"type": "string", "enum": orders})]
        model: type[ExportParameters] = create_model(
            f"{self.plural.title().replace('_', '')}ExportParameters",
            __base__=ExportParameters,
            __doc__=f"What to export of {self.plural} and how.",
            fields=(
                list[Annotated[str, WithJsonSchema(item)]] | None,
                ParamField(
                    None,
                    description=f"Columns in order; absent = {default_fields}. `metadata` adds"
                    " one column per metadata key, `metadata.<key>` one column.",
                ),
            ),
            order=(
                order_type | None,
                ParamField(
                    None,
                    description=f"Sort key, `-` = descending; absent = {self.default_order}.",
                ),
            ),
        )
        return model

    def __post_init__(self) -> None:
        for name in (*self.default_fields, *self.sort_keys, self.default_order.lstrip("-")):
            if name not in self.fields:
                raise ValueError(f"entity {self.name}: {name!r} is not a declared field")
        for target in self.filter_aliases.values():
            if target not in self.fields:
                raise ValueError(f"entity {self.name}: alias target {target!r} is not a field")
        for name, fld in self.fields.items():
            for join in fld.joins:
                if join not in self.joins:
                    raise ValueError(f"entity {self.name}: field {name} needs undeclared {join}")
        for exp in self.expectations:
            if exp.column not in self.fields:
                raise ValueError(f"entity {self.name}: expectation on unknown {exp.column!r}")


def type_of(column: ColumnElement[Any]) -> FieldType:
    """Infer the export type of a column from its SQL type."""
    t = column.type
    if isinstance(t, JSONB | ARRAY | sa.JSON):
        return "json"
    if isinstance(t, sa.Boolean):
        return "bool"
    if isinstance(t, sa.Integer):
        return "int"
    if isinstance(t, sa.Float):
        return "float"
    if isinstance(t, sa.Numeric):
        return "decimal"
    if isinstance(t, sa.DateTime):
        return "timestamp"
    if isinstance(t, sa.Date):
        return "date"
    return "string"


def col(column: ColumnElement[Any], *, label: str = "", joins: tuple[str, ...] = ()) -> Field:
    """A field that is a plain column, typed from the column itself."""
    kind = type_of(column)
    precision, scale = 18, 2
    if kind == "decimal" and isinstance(column.type, sa.Numeric):
        precision = column.type.precision or 38
        scale = column.type.scale or 0
    return Field(column, kind, label, joins, precision, scale)


def columns(table: sa.Table, *names: str) -> dict[str, Field]:
    """Fields for columns of ``table`` exported under their own names."""
    return {name: col(table.c[name]) for name in names}
