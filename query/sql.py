"""The SQL of an export: its count, its metadata keys and the ``COPY (SELECT ...)`` it streams.

Everything is built from the plan with SQLAlchemy Core; the benchmark's COPY baseline runs the
very same SELECT.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from core.types import Column
from entities import Entity
from query.plan import ExportPlan


def count_statement(plan: ExportPlan) -> sa.Select[Any]:
    """The preliminary row count (the job's ``total``)."""
    return sa.select(sa.func.count()).select_from(plan.from_clause()).where(plan.scope())


def tenant_has_rows_statement(entity: Entity, tenant: str) -> sa.Select[Any]:
    """Whether ``tenant`` has any row of ``entity`` at all (a misspelt tenant has none)."""
    probe = sa.select(sa.literal(1)).select_from(entity.table).where(entity.tenant_column == tenant)
    return sa.select(sa.exists(probe))


def metadata_keys_statement(plan: ExportPlan) -> sa.Select[Any]:
    """The distinct metadata keys of the exported rows, sorted (computed by PostgreSQL)."""
    meta = plan.entity.metadata_column
    assert meta is not None
    inner = (
        sa.select(sa.func.jsonb_object_keys(meta).label("k"))
        .select_from(plan.from_clause())
        .where(plan.scope(), sa.func.jsonb_typeof(meta) == "object")
        .subquery()
    )
    return sa.select(inner.c.k).distinct().order_by(inner.c.k)


def metadata_types_statement(plan: ExportPlan, keys: list[str] | None) -> sa.Select[Any]:
    """Per metadata key of the exported rows: the JSON types of its values, and whether every
    number is integral (fits int64); ``keys`` = only these keys, ``None`` = all. Sorted by key.
    """
    meta = plan.entity.metadata_column
    assert meta is not None
    pairs = sa.func.jsonb_each(meta).table_valued("key", "value", joins_implicitly=True)
    kind = sa.func.jsonb_typeof(pairs.c.value)
    number = sa.cast(sa.cast(pairs.c.value, sa.Text), sa.Numeric)  # a JSON number's text
    int64 = sa.and_(
        number == sa.func.trunc(number), sa.func.abs(number) < sa.literal(2**63, sa.Numeric)
    )
    integral = sa.case((kind == "number", int64), else_=sa.true())
    statement = (
        sa.select(
            pairs.c.key,
            sa.func.array_agg(sa.distinct(kind)).label("types"),
            sa.func.bool_and(integral).label("integral"),
        )
        .select_from(plan.from_clause())
        .join(pairs, sa.true())
        .where(plan.scope(), sa.func.jsonb_typeof(meta) == "object")
        .group_by(pairs.c.key)
        .order_by(pairs.c.key)
    )
    if keys is not None:
        statement = statement.where(pairs.c.key.in_(keys))
    return statement


def select_statement(plan: ExportPlan, columns: list[Column]) -> sa.Select[Any]:
    """The SELECT an export runs."""
    return (
        sa.select(*[c.sql.label(f"c{i}") for i, c in enumerate(columns)])
        .select_from(plan.from_clause())
        .where(plan.scope())
        .order_by(*plan.order_by)
    )


def copy_sql(
    dialect: sa.Dialect, plan: ExportPlan, columns: list[Column], header: bool = False
) -> tuple[str, dict[str, Any]]:
    """``COPY (<select>) TO STDOUT (FORMAT csv)`` text and its parameters for psycopg."""
    compiled = select_statement(plan, columns).compile(
        dialect=dialect, compile_kwargs={"render_postcompile": True}
    )
    options = "FORMAT csv, HEADER" if header else "FORMAT csv"
    return f"COPY ({compiled}) TO STDOUT ({options})", dict(compiled.params)
