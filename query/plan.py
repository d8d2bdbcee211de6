"""An export request -> a validated ``ExportPlan``: the one check every door runs.

The API, the flows (Prefect UI, schedules, CLI) and the benchmark all call ``plan_export``.
Names are looked up in the entity declaration and never reach SQL as text; values become
bound parameters. Every problem raises ``InvalidRequest`` naming the bad value and the allowed
ones, before any row is read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.sql.elements import ColumnElement

from core.formats import check_compression, get_format
from core.names import allowed as _allowed
from core.names import invalid as _invalid
from core.params import ExportParameters, Header
from core.settings import get_settings
from core.tenants import check_tenant
from core.types import Column, FieldType, human_label
from entities import Entity
from entities.catalog import Field as EntityField
from query.fields import metadata_field, typed_metadata_field
from query.filters import check_filters


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
    validation: bool = True
    parallelism: int | str = 1
    """Parts to split the export into (``auto``: chosen by the coordinator from the count)."""
    sort_expr: ColumnElement[Any] | None = None
    """The sort key's expression (the primary key follows it as the tie-breaker)."""
    descending: bool = False

    @property
    def expands_metadata(self) -> bool:
        return "metadata" in self.fields and self.entity.metadata_column is not None

    @property
    def typed_metadata(self) -> bool:
        """Whether metadata columns keep their JSON type (the format can hold types)."""
        return self.entity.metadata_column is not None and get_format(self.format).typed_metadata

    def metadata_keys(self) -> list[str]:
        """The keys selected one by one (``metadata.<key>`` fields)."""
        return [n.removeprefix("metadata.") for n in self.fields if n.startswith("metadata.")]

    def columns(
        self,
        metadata_keys: list[str] | None = None,
        metadata_types: dict[str, FieldType] | None = None,
    ) -> list[Column]:
        """The output columns, with ``metadata`` replaced by one column per key seen.

        ``metadata_types`` types ``metadata.<key>`` columns (text when absent); the partition
        column stays text, as its rows are grouped by that text.
        """
        types = dict(metadata_types or {})
        if self.partition_by and self.partition_by.startswith("metadata."):
            types.pop(self.partition_by.removeprefix("metadata."), None)
        out: list[Column] = []
        explicit = set(self.fields)
        for name in self.fields:
            if name == "metadata" and self.entity.metadata_column is not None:
                for key in metadata_keys or []:
                    if f"metadata.{key}" not in explicit:
                        out.append(_metadata_column(self.entity, key, types.get(key)))
            elif name.startswith("metadata."):
                key = name.removeprefix("metadata.")
                out.append(_metadata_column(self.entity, key, types.get(key)))
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


def parse_parameters(parameters: ExportParameters | dict[str, Any] | None) -> ExportParameters:
    """The request's parameters as the model, or ``InvalidRequest`` naming each bad key."""
    if isinstance(parameters, ExportParameters):
        return parameters
    try:
        return ExportParameters.model_validate(parameters or {})
    except ValidationError as exc:
        raise _invalid(
            f"invalid export parameters: {_pydantic_message(exc)}", "invalid_parameters"
        ) from None


def plan_export(
    entity: Entity,
    tenant: str,
    parameters: ExportParameters | dict[str, Any] | None = None,
    *,
    now: datetime | None = None,
) -> ExportPlan:
    """Validate ``parameters`` for ``entity`` and ``tenant``; raise ``InvalidRequest`` if bad.

    ``now`` anchors relative dates (``-P1D``, ``start_of_previous_month``).
    """
    settings = get_settings()
    check_size(parameters, settings.max_parameters_bytes)
    params = parse_parameters(parameters)
    check_tenant(tenant)
    ttl_s = settings.result_ttl_days * 86_400
    if params.expires_in is not None and params.expires_in > ttl_s:
        raise _invalid(
            f"expires_in {params.expires_in} is longer than this service keeps files"
            f" ({ttl_s} s = {settings.result_ttl_days} days); ask for {ttl_s} or less",
            "invalid_expires_in",
            max=ttl_s,
        )
    spec = get_format(params.format)
    compression = check_compression(spec, params.compression)
    fields = entity.names.check_fields(params.fields)
    order_name, descending, order_field = _check_order(entity, params.order)
    where, filter_joins = check_filters(entity, params.filters, now)
    partition = _check_partition(entity, params.partition_by, compression)
    if partition is not None and partition[0] not in fields:
        fields = (*fields, partition[0])

    _check_parallelism(params.parallelism, spec.name, partition is not None)
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
    normalised = params.model_copy(
        update={
            "fields": list(fields),
            "order": ("-" if descending else "") + order_name,
            "format": spec.name,
            "compression": compression,
            "partition_by": partition[0] if partition else None,
        }
    )
    return ExportPlan(
        entity,
        tenant,
        fields,
        where,
        order_by,
        frozenset(joins),
        spec.name,
        compression,
        normalised.stored(),
        partition_by=partition[0] if partition else None,
        header=params.header,
        neutralize_formulas=params.neutralize_formulas is not False,
        title=params.title,
        validation=params.validation,
        parallelism=params.parallelism,
        sort_expr=None if order_expr is key else order_expr,
        descending=descending,
    )


def check_size(parameters: ExportParameters | dict[str, Any] | None, limit: int) -> None:
    """Refuse parameters whose JSON is larger than ``limit`` bytes (before anything else)."""
    if isinstance(parameters, ExportParameters):
        raw: Any = parameters.model_dump(mode="json", exclude_none=True)
    else:
        raw = parameters
    size = len(json.dumps(raw, default=str).encode())
    if size > limit:
        raise _invalid(
            f"parameters are too large ({size} bytes of JSON); at most {limit} bytes",
            "parameters_too_large",
            size=size,
            max=limit,
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


PARALLEL_FORMATS = ("csv", "jsonl", "json", "parquet")
"""Formats a parallel export can assemble into one file from its parts."""


def _check_parallelism(parallelism: int | str, format: str, partitioned: bool) -> None:
    if parallelism in (1, "auto"):
        return
    if format not in PARALLEL_FORMATS or partitioned:
        raise _invalid(
            f"parallelism {parallelism} is not available for {format}"
            + (" with partition_by" if partitioned else "")
            + f"; parallel exports write {', '.join(PARALLEL_FORMATS)} without partition_by"
            " (use parallelism 1 or auto)",
            "invalid_parallelism",
        )


def _pydantic_message(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()))
        msg = str(err.get("msg", "")).removeprefix("Value error, ")
        if err.get("type") == "extra_forbidden":
            msg = "unknown parameter; allowed: " + ", ".join(ExportParameters.model_fields)
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


def _check_order(entity: Entity, order: str | None) -> tuple[str, bool, EntityField]:
    name, descending = entity.names.check_order(order)
    return name, descending, entity.fields[name]


def _metadata_column(entity: Entity, key: str, kind: FieldType | None = None) -> Column:
    name = f"metadata.{key}"
    fld = typed_metadata_field(entity, name, kind) if kind else metadata_field(entity, name)
    assert fld is not None
    return Column(name, fld.label, fld.type, fld.expr)
