"""Splitting an export into key ranges for parallel parts, and the SQL of one range.

The export's order is (sort key, primary key), so every row has a unique place and a range
"after boundary A, up to and including boundary B" in that order is exact: parts read one
after another are the whole export, in order, each row once. Boundaries are real rows, taken
at evenly spaced row numbers of that order (``row_number() OVER (ORDER BY ...)``, one pass
over the sort index), so parts are balanced and none is empty.

A boundary is JSON: the sort key's and the primary key's values as PostgreSQL's own text and
their type names (``pg_typeof``), cast back in SQL, so a timestamp or a numeric round-trips
exactly through a flow run's parameters. NULL sort keys sort last ascending and first
descending (PostgreSQL's defaults, as the export's ORDER BY uses), and the range SQL
follows the same rule.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from query.plan import ExportPlan

Bound = dict[str, Any]
"""``{"sort": text | None, "sort_type": name, "key": text, "key_type": name}``."""

_TYPE_NAME = re.compile(r"^[a-z][a-z0-9_ ]*(\(\d+(,\s*\d+)?\))?( with(out)? time zone)?$")


def split_positions(total: int, parts: int) -> list[int]:
    """Row numbers (1-based) that end each part but the last: balanced within one row."""
    return [total * k // parts for k in range(1, parts)]


def boundaries_statement(plan: ExportPlan, positions: list[int]) -> sa.Select[Any]:
    """The boundary rows at ``positions`` of the export's order (run in its snapshot)."""
    key = plan.entity.key
    row_number = sa.func.row_number().over(order_by=list(plan.order_by)).label("rn")
    sort = plan.sort_expr
    cols: list[Any] = [
        sa.cast(key, sa.Text).label("key"),
        sa.cast(sa.func.pg_typeof(key), sa.Text).label("key_type"),
    ]
    if sort is not None:
        cols += [
            sa.cast(sort, sa.Text).label("sort"),
            sa.cast(sa.func.pg_typeof(sort), sa.Text).label("sort_type"),
        ]
    inner = (
        sa.select(*cols, row_number).select_from(plan.from_clause()).where(plan.scope()).subquery()
    )
    return sa.select(inner).where(inner.c.rn.in_(positions or [0])).order_by(inner.c.rn)


def bound_from_row(row: Any) -> Bound:
    mapping = row._mapping
    return {
        "sort": mapping.get("sort"),
        "sort_type": mapping.get("sort_type"),
        "key": mapping["key"],
        "key_type": mapping["key_type"],
    }


class _PgType(sa.types.UserDefinedType[Any]):
    """A PostgreSQL type by the name ``pg_typeof`` gave (checked), for ``CAST(:v AS type)``."""

    cache_ok = True

    def __init__(self, name: str) -> None:
        if not _TYPE_NAME.match(name):
            raise ValueError(f"unexpected type name in a part boundary: {name!r}")
        self.name = name

    def get_col_spec(self, **kw: Any) -> str:
        return self.name


def _value(text: str, type_name: str) -> ColumnElement[Any]:
    return sa.cast(sa.literal(text, sa.Text), _PgType(type_name))


def _after(plan: ExportPlan, bound: Bound) -> ColumnElement[bool]:
    """Rows strictly after ``bound`` in the export's order."""
    key = plan.entity.key
    kb = _value(bound["key"], bound["key_type"])
    sort = plan.sort_expr
    desc = plan.descending
    if sort is None:
        return key < kb if desc else key > kb
    if bound["sort"] is None:  # the bound is in the NULL group
        if desc:  # NULLs first: after = the rest of the NULL group, then every value
            return sa.or_(sort.is_not(None), sa.and_(sort.is_(None), key < kb))
        return sa.and_(sort.is_(None), key > kb)  # NULLs last
    sb = _value(bound["sort"], bound["sort_type"])
    if desc:
        return sa.tuple_(sort, key) < sa.tuple_(sb, kb)  # NULL sort -> NULL -> not after
    return sa.or_(sa.tuple_(sort, key) > sa.tuple_(sb, kb), sort.is_(None))


def _at_or_before(plan: ExportPlan, bound: Bound) -> ColumnElement[bool]:
    """Rows up to and including ``bound`` in the export's order (the complement of after)."""
    key = plan.entity.key
    kb = _value(bound["key"], bound["key_type"])
    sort = plan.sort_expr
    desc = plan.descending
    if sort is None:
        return key >= kb if desc else key <= kb
    if bound["sort"] is None:
        if desc:
            return sa.and_(sort.is_(None), key >= kb)
        return sa.or_(sort.is_not(None), sa.and_(sort.is_(None), key <= kb))
    sb = _value(bound["sort"], bound["sort_type"])
    if desc:
        return sa.or_(sort.is_(None), sa.tuple_(sort, key) >= sa.tuple_(sb, kb))
    return sa.tuple_(sort, key) <= sa.tuple_(sb, kb)


def range_clause(plan: ExportPlan, lower: Bound | None, upper: Bound | None) -> ColumnElement[bool]:
    """The rows of one part: after ``lower`` (exclusive), up to ``upper`` (inclusive)."""
    clauses = []
    if lower is not None:
        clauses.append(_after(plan, lower))
    if upper is not None:
        clauses.append(_at_or_before(plan, upper))
    return sa.and_(sa.true(), *clauses)


def part_plan(plan: ExportPlan, lower: Bound | None, upper: Bound | None) -> ExportPlan:
    """``plan`` narrowed to one part's range (same columns, order and format)."""
    return replace(plan, where=sa.and_(plan.where, range_clause(plan, lower, upper)))
