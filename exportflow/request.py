"""Export parameters (Voucherify's wire format) and their validation into an ``ExportPlan``.

One validation for every door: the API, the flows (Prefect UI, schedules, CLI) and the
benchmark all call ``plan_export``. Names are looked up in the entity declaration and never
reach SQL as text; values become bound parameters. Every problem raises ``InvalidRequest``
naming the bad value and the allowed ones, before any row is read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.sql.elements import ColumnElement

from entities import Entity
from entities.catalog import Field as EntityField
from entities.catalog import FieldType, human_label
from exportflow.errors import InvalidRequest
from exportflow.timeparse import parse_instant

ExportFormat = Literal["csv", "json", "jsonl", "parquet", "xlsx", "pdf"]
Compression = Literal["gzip", "zstd"]
Header = Literal["names", "labels"]
Junction = Literal["and", "or"]

MAX_FIELDS = 500
MAX_IN_VALUES = 10_000
MAX_METADATA_KEY = 200
_METADATA_KEY = re.compile(rf"^[^\x00-\x1f]{{1,{MAX_METADATA_KEY}}}$")


class ExportParameters(BaseModel):
    """The ``parameters`` object of an export (API body, flow parameters, schedules)."""

    model_config = ConfigDict(extra="forbid")

    fields: list[str] | None = Field(
        None, description="Columns in order; absent = the entity's default fields."
    )
    order: str | None = Field(None, description="Sort key; `-field` sorts descending.")
    filters: dict[str, Any] | None = Field(
        None,
        description='{"junction": "and", "<field>": {"conditions": {"$in": [...]}}}',
    )
    format: str = Field("csv", description="csv | json | jsonl | parquet | xlsx | pdf")
    compression: str | None = Field(None, description="gzip | zstd (csv/json/jsonl)")
    partition_by: str | None = Field(
        None, description="One file per distinct value of this field, packaged in one ZIP."
    )
    header: Header | None = Field(
        None, description="Header row of field `names` (CSV default) or human `labels`."
    )
    neutralize_formulas: bool | None = Field(
        None, description="CSV/XLSX: prefix ' to text starting with = + - @ tab CR NUL (default)."
    )
    title: str | None = Field(
        None,
        max_length=200,
        pattern=r"^[^\x00-\x1f]*$",
        description="XLSX title row / PDF title (no control characters).",
    )


@dataclass(frozen=True)
class Column:
    """One output column: its name in the file, human label, type and SQL expression."""

    name: str
    label: str
    type: FieldType
    sql: ColumnElement[Any]
    precision: int = 18
    scale: int = 2


@dataclass(frozen=True)
class ExportPlan:
    """A validated export: what to select, from where, in which order, into which format."""

    entity: Entity
    tenant: str
    fields: tuple[str, ...]
    """Requested field names (defaults applied); ``metadata`` is expanded at read time."""
    where: ColumnElement[bool]
    order_by: tuple[ColumnElement[Any], ...]
    joins: frozenset[str]
    format: str
    compression: str | None
    parameters: dict[str, Any]
    """The normalised parameters, as stored on the job and hashed for duplicate detection."""
    partition_by: str | None = None
    """Field whose distinct values each get their own file in one ZIP (rows sorted by it)."""
    header: Header | None = None
    neutralize_formulas: bool = True
    title: str | None = None

    @property
    def expands_metadata(self) -> bool:
        return "metadata" in self.fields and self.entity.metadata_column is not None

    def columns(self, metadata_keys: list[str] | None = None) -> list[Column]:
        """The output columns, with ``metadata`` replaced by one column per key seen."""
        out: list[Column] = []
        explicit = set(self.fields)
        for name in self.fields:
            if name == "metadata" and self.entity.metadata_column is not None:
                for key in metadata_keys or []:
                    if f"metadata.{key}" not in explicit:
                        out.append(_metadata_column(self.entity, key))
            elif name.startswith("metadata."):
                out.append(_metadata_column(self.entity, name.removeprefix("metadata.")))
            else:
                fld = self.entity.fields[name]
                out.append(
                    Column(
                        name,
                        fld.label or human_label(name),
                        fld.type,
                        fld.sql(),
                        fld.precision,
                        fld.scale,
                    )
                )
        return out

    def from_clause(self) -> sa.FromClause:
        source: sa.FromClause = self.entity.table
        for name, join in self.entity.joins.items():
            if name in self.joins:
                source = source.outerjoin(join.table, join.onclause)
        return source

    def scope(self) -> ColumnElement[bool]:
        return sa.and_(self.entity.tenant_column == self.tenant, self.where)


def metadata_field(entity: Entity, name: str) -> EntityField | None:
    """``metadata.<key>`` of ``entity`` as a text field, or None if ``name`` is not one.

    The one place a metadata key becomes SQL: ``metadata ->> :key``, the key a bound value.
    """
    key = name.removeprefix("metadata.")
    meta = entity.metadata_column
    if meta is None or key == name or not _METADATA_KEY.match(key):
        return None
    return EntityField(meta.op("->>")(sa.literal(key, sa.Text)), "string", human_label(name))


def _metadata_column(entity: Entity, key: str) -> Column:
    name = f"metadata.{key}"
    fld = metadata_field(entity, name)
    assert fld is not None
    return Column(name, fld.label, fld.type, fld.expr)


def _invalid(message: str, key: str, **details: Any) -> InvalidRequest:
    return InvalidRequest(message, key=key, details=details or None)


def _allowed(names: Any) -> str:
    return ", ".join(sorted(names))


def plan_export(
    entity: Entity,
    tenant: str,
    parameters: ExportParameters | dict[str, Any] | None = None,
    *,
    now: datetime | None = None,
    formats: Any = None,
) -> ExportPlan:
    """Validate ``parameters`` for ``entity`` and ``tenant``; raise ``InvalidRequest`` if bad.

    ``now`` anchors relative dates (``-P1D``); ``formats`` is the registry of writable formats
    (defaults to ``exporters.FORMATS``).
    """
    if isinstance(parameters, ExportParameters):
        params = parameters
    else:
        try:
            params = ExportParameters.model_validate(parameters or {})
        except Exception as exc:  # pydantic.ValidationError: name the offending keys
            raise _invalid(
                f"invalid export parameters: {_pydantic_message(exc)}", "invalid_parameters"
            ) from None
    if not isinstance(tenant, str) or not tenant.strip():
        raise _invalid("tenant is required", "invalid_tenant")
    if formats is None:
        from exporters import FORMATS

        formats = FORMATS

    fmt = params.format.lower() if isinstance(params.format, str) else params.format
    if fmt not in formats:
        raise _invalid(
            f"unknown format {params.format!r}; allowed: {_allowed(formats)}",
            "unknown_format",
            allowed=sorted(formats),
        )
    compression = params.compression.lower() if params.compression else None
    if compression is not None:
        allowed_c = getattr(formats[fmt], "compressions", ())
        if compression not in allowed_c:
            raise _invalid(
                f"compression {params.compression!r} is not available for {fmt}; allowed: "
                + (_allowed(allowed_c) or "none"),
                "unknown_compression",
                allowed=sorted(allowed_c),
            )

    fields = _check_fields(entity, params.fields)
    order_name, descending, order_field = _check_order(entity, params.order)
    where, filter_joins = _check_filters(entity, params.filters, now)
    partition = _check_partition(entity, params.partition_by, compression)
    if partition is not None and partition[0] not in fields:
        fields = (*fields, partition[0])

    key = entity.key
    order_expr = order_field.expr
    order_by: tuple[ColumnElement[Any], ...] = (
        (order_expr.desc(), key.desc()) if descending else (order_expr.asc(), key.asc())
    )
    if order_expr is key:
        order_by = order_by[:1]
    joins = set(filter_joins) | set(order_field.joins)
    if partition is not None:
        order_by = (partition[1].expr.asc().nulls_first(), *order_by)
        joins.update(partition[1].joins)
    for name in fields:
        if name in entity.fields:
            joins.update(entity.fields[name].joins)
    normalised: dict[str, Any] = {
        "fields": list(fields),
        "order": ("-" if descending else "") + order_name,
        "format": fmt,
    }
    if params.filters:
        normalised["filters"] = params.filters
    if compression:
        normalised["compression"] = compression
    for name in ("header", "neutralize_formulas", "title"):
        if getattr(params, name) is not None:
            normalised[name] = getattr(params, name)
    if partition is not None:
        normalised["partition_by"] = partition[0]
    return ExportPlan(
        entity,
        tenant,
        fields,
        where,
        order_by,
        frozenset(joins),
        fmt,
        compression,
        normalised,
        partition_by=partition[0] if partition else None,
        header=params.header,
        neutralize_formulas=params.neutralize_formulas is not False,
        title=params.title,
    )


def _check_partition(
    entity: Entity, name: str | None, compression: str | None
) -> tuple[str, EntityField] | None:
    """``partition_by`` -> (field name, its declaration); a ZIP is never compressed again."""
    if name is None or name == "":
        return None
    fld = entity.fields.get(name) or metadata_field(entity, name)
    allowed = [n for n, f in entity.fields.items() if f.type != "json"]
    if fld is None or fld.type == "json":
        raise _invalid(
            f"cannot partition {entity.name} exports by {name!r}; allowed: {_allowed(allowed)}"
            + (", metadata.<key>" if entity.metadata_column is not None else ""),
            "unknown_partition_field",
            field=name,
            allowed=sorted(allowed),
        )
    if compression is not None:
        raise _invalid(
            "partition_by writes a ZIP, which is already compressed: leave out compression",
            "invalid_compression",
        )
    return name, fld


def _pydantic_message(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return str(exc)
    parts = []
    for err in errors():
        loc = ".".join(str(p) for p in err.get("loc", ()))
        msg = err.get("msg", "")
        if err.get("type") == "extra_forbidden":
            msg = (
                "unknown parameter; allowed: fields, order, filters, format, compression,"
                " partition_by, header, neutralize_formulas, title"
            )
        parts.append(f"{loc}: {msg}")
    return "; ".join(parts)


def _check_fields(entity: Entity, fields: list[str] | None) -> tuple[str, ...]:
    if fields is None:
        return entity.default_fields
    if not fields:
        raise _invalid(
            f"fields is empty: leave it out for the defaults ({', '.join(entity.default_fields)})",
            "invalid_fields",
        )
    if len(fields) > MAX_FIELDS:
        raise _invalid(f"too many fields ({len(fields)} > {MAX_FIELDS})", "invalid_fields")
    seen: set[str] = set()
    for name in fields:
        if not isinstance(name, str):
            raise _invalid(f"field names must be strings, got {name!r}", "invalid_fields")
        if name in seen:
            raise _invalid(f"field {name!r} is listed twice", "duplicate_field", field=name)
        seen.add(name)
        if name in entity.fields:
            continue
        if name.startswith("metadata.") and entity.metadata_column is not None:
            if metadata_field(entity, name) is not None:
                continue
            raise _invalid(f"invalid metadata key in {name!r}", "invalid_field", field=name)
        raise _invalid(
            f"unknown field {name!r} for {entity.name}; allowed: {_allowed(entity.fields)}"
            + (", metadata.<key>" if entity.metadata_column is not None else ""),
            "unknown_field",
            field=name,
            allowed=sorted(entity.fields),
        )
    return tuple(fields)


def _check_order(entity: Entity, order: str | None) -> tuple[str, bool, EntityField]:
    raw = entity.default_order if order is None or order == "" else order
    if not isinstance(raw, str):
        raise _invalid(
            f"order must be a string such as '-created_at', got {raw!r}", "invalid_order"
        )
    descending = raw.startswith("-")
    name = raw[1:] if descending else raw.lstrip("+")
    if name not in entity.sort_keys:
        raise _invalid(
            f"cannot order {entity.name} exports by {raw!r}; allowed: "
            f"{_allowed(entity.sort_keys)} (prefix '-' for descending)",
            "invalid_order",
            order=raw,
            allowed=sorted(entity.sort_keys),
        )
    return name, descending, entity.fields[name]


_STRING_OPS = {
    "$in",
    "$not_in",
    "$is",
    "$is_not",
    "$has_value",
    "$is_unknown",
    "$starts_with",
    "$ends_with",
    "$contains",
    "$not_contain",
}
_NUMBER_OPS = {
    "$in",
    "$not_in",
    "$is",
    "$is_not",
    "$has_value",
    "$is_unknown",
    "$more_than",
    "$less_than",
}
_TIME_OPS = {
    "$is",
    "$is_not",
    "$has_value",
    "$is_unknown",
    "$after",
    "$before",
    "$more_than",
    "$less_than",
}
OPERATORS: dict[FieldType, set[str]] = {
    "string": _STRING_OPS,
    "int": _NUMBER_OPS,
    "float": _NUMBER_OPS,
    "decimal": _NUMBER_OPS,
    "timestamp": _TIME_OPS,
    "date": _TIME_OPS,
    "bool": {"$is", "$is_not", "$has_value", "$is_unknown"},
    "json": {"$has_value", "$is_unknown"},
}
ALL_OPERATORS = sorted(set().union(*OPERATORS.values()))


def _check_filters(
    entity: Entity, filters: dict[str, Any] | None, now: datetime | None
) -> tuple[ColumnElement[bool], set[str]]:
    if not filters:
        return sa.true(), set()
    if not isinstance(filters, dict):
        raise _invalid("filters must be an object", "invalid_filters")
    junction = _junction(filters.get("junction", "and"), "filters.junction")
    clauses: list[ColumnElement[bool]] = []
    joins: set[str] = set()
    for name, spec in filters.items():
        if name == "junction":
            continue
        fld = _filter_field(entity, name)
        joins.update(fld.joins)
        if not isinstance(spec, dict) or not isinstance(spec.get("conditions"), dict):
            raise _invalid(
                f'filter {name!r} must look like {{"conditions": {{"$in": [...]}}}}',
                "invalid_filters",
                field=name,
            )
        unknown_keys = set(spec) - {"conditions", "junction"}
        if unknown_keys:
            raise _invalid(
                f"filter {name!r}: unknown keys {_allowed(unknown_keys)}; allowed: "
                "conditions, junction",
                "invalid_filters",
                field=name,
            )
        inner = _junction(spec.get("junction", "and"), f"filters.{name}.junction")
        conditions = spec["conditions"]
        if not conditions:
            raise _invalid(f"filter {name!r} has no conditions", "invalid_filters", field=name)
        parts = [_condition(name, fld, op, value, now) for op, value in conditions.items()]
        clauses.append(sa.and_(*parts) if inner == "and" else sa.or_(*parts))
    if not clauses:
        return sa.true(), joins
    return (sa.and_(*clauses) if junction == "and" else sa.or_(*clauses)), joins


def _junction(value: Any, where: str) -> Junction:
    if isinstance(value, str) and value.lower() in ("and", "or"):
        return "and" if value.lower() == "and" else "or"
    raise _invalid(f"{where} must be 'and' or 'or', got {value!r}", "invalid_filters")


def _filter_field(entity: Entity, name: str) -> EntityField:
    target = entity.filter_aliases.get(name, name)
    fld = entity.fields.get(target)
    if fld is not None and fld.filterable and target != "metadata":
        return fld
    meta_field = metadata_field(entity, name)
    if meta_field is not None:
        return meta_field
    allowed = [n for n, f in entity.fields.items() if f.filterable and n != "metadata"]
    allowed += list(entity.filter_aliases)
    raise _invalid(
        f"cannot filter {entity.name} exports by {name!r}; allowed: {_allowed(allowed)}"
        + (", metadata.<key>" if entity.metadata_column is not None else ""),
        "unknown_filter",
        field=name,
        allowed=sorted(allowed),
    )


def _condition(
    name: str, fld: EntityField, op: str, value: Any, now: datetime | None
) -> ColumnElement[bool]:
    allowed = OPERATORS[fld.type]
    if op not in allowed:
        known = "unknown operator" if op not in ALL_OPERATORS else f"not for {fld.type} fields"
        raise _invalid(
            f"filter {name!r}: {op!r} is {known}; allowed: {_allowed(allowed)}",
            "invalid_operator",
            field=name,
            operator=op,
            allowed=sorted(allowed),
        )
    expr = fld.expr
    if op in ("$has_value", "$is_unknown"):
        if value not in (True, None, "", [], {}) and value is not False:
            raise _invalid(
                f"filter {name!r}: {op} takes no value, got {value!r}; allowed: true, false",
                "invalid_value",
                field=name,
                operator=op,
            )
        is_null = expr.is_(None)
        want_value = (op == "$has_value") != (value is False)
        return sa.not_(is_null) if want_value else is_null
    if op in ("$in", "$not_in"):
        if not isinstance(value, list) or not value:
            raise _invalid(
                f"filter {name!r}: {op} needs a non-empty list of values, got {value!r}",
                "invalid_value",
                field=name,
                operator=op,
            )
        if len(value) > MAX_IN_VALUES:
            raise _invalid(
                f"filter {name!r}: {op} has {len(value)} values, at most {MAX_IN_VALUES}",
                "invalid_value",
            )
        values = [_coerce(name, fld.type, v, now) for v in value]
        if op == "$in":
            return expr.in_(values)
        return sa.or_(expr.not_in(values), expr.is_(None))
    coerced = _coerce(name, fld.type, value, now)
    if op == "$is":
        return sa.and_(expr == coerced)
    if op == "$is_not":
        return expr.is_distinct_from(coerced)
    if op in ("$after", "$more_than"):
        return sa.and_(expr > coerced)
    if op in ("$before", "$less_than"):
        return sa.and_(expr < coerced)
    text = str(coerced)
    if op == "$starts_with":
        return expr.startswith(text, autoescape=True)
    if op == "$ends_with":
        return expr.endswith(text, autoescape=True)
    if op == "$contains":
        return expr.contains(text, autoescape=True)
    return sa.or_(sa.not_(expr.contains(text, autoescape=True)), expr.is_(None))  # $not_contain


def _coerce(name: str, kind: FieldType, value: Any, now: datetime | None) -> Any:
    def bad(expected: str) -> InvalidRequest:
        return _invalid(
            f"filter {name!r}: {value!r} is not {expected}",
            "invalid_value",
            field=name,
            value=repr(value)[:200],
        )

    if value is None:
        raise _invalid(
            f"filter {name!r}: null is not a value; use $is_unknown / $has_value",
            "invalid_value",
            field=name,
        )
    if kind == "string":
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            return str(value)
        raise bad("a string")
    if kind == "int":
        if isinstance(value, bool):
            raise bad("an integer")
        if isinstance(value, int):
            return value
        if isinstance(value, str) and re.fullmatch(r"[+-]?\d{1,18}", value.strip()):
            return int(value)
        raise bad("an integer")
    if kind in ("decimal", "float"):
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise bad("a number")
        try:
            number = Decimal(str(value).strip())
        except InvalidOperation:
            raise bad("a number") from None
        if not number.is_finite():
            raise bad("a finite number")
        return number if kind == "decimal" else float(number)
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise bad("true or false")
    if kind in ("timestamp", "date"):
        try:
            instant = parse_instant(value, now)
        except ValueError as exc:
            raise _invalid(f"filter {name!r}: {exc}", "invalid_date", field=name) from None
        return instant.date() if kind == "date" else instant
    raise bad("filterable")
