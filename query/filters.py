"""Filters in Voucherify's format -> one SQL condition with bound values.

``{"junction": "and", "<field>": {"junction": "or", "conditions": {"$in": [...]}}}``: field
names are looked up in the entity (or are ``metadata.<key>``), operators are checked against
the field's type, and every value is coerced to that type and checked against its range, so
a request either becomes a condition PostgreSQL can run or fails naming the bad value.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from core.errors import InvalidRequest
from core.names import allowed as _allowed
from core.names import invalid as _invalid
from core.timeparse import parse_instant
from core.types import FieldType
from entities import Entity
from entities.catalog import Field as EntityField
from query.fields import metadata_field

Junction = Literal["and", "or"]
MAX_IN_VALUES = 10_000
MAX_TEXT_VALUE = 1_000
"""Longest string a filter compares with (characters)."""

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


def check_filters(
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
        values = [_coerce(name, fld, v, now) for v in value]
        if op == "$in":
            return expr.in_(values)
        return sa.or_(expr.not_in(values), expr.is_(None))
    coerced = _coerce(name, fld, value, now)
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


def _int_range(fld: EntityField) -> tuple[int, int]:
    """The value range of an integer field's SQL type (smallint, integer or bigint)."""
    t = fld.expr.type
    if isinstance(t, sa.SmallInteger):
        return -(2**15), 2**15 - 1
    if isinstance(t, sa.BigInteger):
        return -(2**63), 2**63 - 1
    return -(2**31), 2**31 - 1


def _decimal_limit(fld: EntityField) -> Decimal:
    """Magnitude a numeric(p, s) field cannot reach: 10^(p - s)."""
    return Decimal(10) ** (fld.precision - fld.scale)


def _text(name: str, value: str) -> str:
    if len(value) > MAX_TEXT_VALUE:
        raise _invalid(
            f"filter {name!r}: a value of {len(value):,} characters is too long; at most"
            f" {MAX_TEXT_VALUE:,}",
            "invalid_value",
            field=name,
        )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _invalid(
            f"filter {name!r}: the value is not valid Unicode text (a lone surrogate)",
            "invalid_value",
            field=name,
        ) from None
    if "\x00" in value:
        raise _invalid(f"filter {name!r}: the value contains NUL", "invalid_value", field=name)
    return value


def _coerce(name: str, fld: EntityField, value: Any, now: datetime | None) -> Any:
    kind: FieldType = fld.type

    def bad(expected: str) -> InvalidRequest:
        return _invalid(
            f"filter {name!r}: {_short(value)} is not {expected}",
            "invalid_value",
            field=name,
        )

    if value is None:
        raise _invalid(
            f"filter {name!r}: null is not a value; use $is_unknown / $has_value",
            "invalid_value",
            field=name,
        )
    if isinstance(value, str):
        value = _text(name, value)
    if kind == "string":
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            return _text(name, str(value))
        raise bad("a string")
    if kind == "int":
        if isinstance(value, bool):
            raise bad("an integer")
        number: int | None = None
        if isinstance(value, int):
            number = value
        elif isinstance(value, str) and value.strip().lstrip("+-").isdigit():
            digits = value.strip()
            number = int(digits) if len(digits) <= 40 else None
        if number is None:
            raise bad("an integer")
        low, high = _int_range(fld)
        if not low <= number <= high:
            raise bad(f"an integer between {low:,} and {high:,}")
        return number
    if kind in ("decimal", "float"):
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise bad("a number")
        try:
            decimal = Decimal(str(value).strip())
        except (InvalidOperation, ValueError):
            raise bad("a number") from None
        if not decimal.is_finite():
            raise bad("a finite number")
        if kind == "decimal":
            limit = _decimal_limit(fld)
            if decimal.adjusted() >= fld.precision - fld.scale:
                raise bad(f"a number between -{limit:,} and {limit:,} (exclusive)")
            return decimal
        if abs(decimal) > Decimal("1e300"):
            raise bad("a number of at most 1e300")
        return float(decimal)
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


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
