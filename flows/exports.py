"""One Prefect flow per entity, each a short ``def`` so the Prefect UI shows a typed form and
``prefect deploy`` finds the entrypoint. They all run ``flows.pipeline.run_export``."""

from __future__ import annotations

from typing import Any, Literal
from uuid import UUID

from prefect import flow

from entities.orders import ORDERS
from entities.vouchers import VOUCHERS
from flows.pipeline import run_export

Format = Literal["csv", "json", "jsonl", "parquet", "xlsx", "pdf"]
Compression = Literal["gzip", "zstd"]
Header = Literal["names", "labels"]


@flow(name="export-vouchers", description=VOUCHERS.description)
def export_vouchers(
    tenant: str = "demo",
    fields: list[str] | None = None,
    order: str | None = None,
    filters: dict[str, Any] | None = None,
    format: Format = "csv",
    compression: Compression | None = None,
    partition_by: str | None = None,
    header: Header | None = None,
    neutralize_formulas: bool = True,
    title: str | None = None,
    job_id: UUID | None = None,
    validation: bool = True,
) -> dict[str, Any]:
    return run_export(
        VOUCHERS,
        tenant=tenant,
        fields=fields,
        order=order,
        filters=filters,
        format=format,
        compression=compression,
        partition_by=partition_by,
        header=header,
        neutralize_formulas=None if neutralize_formulas else False,
        title=title,
        job_id=job_id,
        validate=validation,
    )


@flow(name="export-orders", description=ORDERS.description)
def export_orders(
    tenant: str = "demo",
    fields: list[str] | None = None,
    order: str | None = None,
    filters: dict[str, Any] | None = None,
    format: Format = "csv",
    compression: Compression | None = None,
    partition_by: str | None = None,
    header: Header | None = None,
    neutralize_formulas: bool = True,
    title: str | None = None,
    job_id: UUID | None = None,
    validation: bool = True,
) -> dict[str, Any]:
    return run_export(
        ORDERS,
        tenant=tenant,
        fields=fields,
        order=order,
        filters=filters,
        format=format,
        compression=compression,
        partition_by=partition_by,
        header=header,
        neutralize_formulas=None if neutralize_formulas else False,
        title=title,
        job_id=job_id,
        validate=validation,
    )


FLOWS = {VOUCHERS.name: export_vouchers, ORDERS.name: export_orders}
"""Entity name -> its flow; ``tests/test_catalog.py`` proves it matches ``entities.ENTITIES``."""
