"""One Prefect flow per entity, each a short ``def`` so the Prefect UI shows a typed form and
``prefect deploy`` finds the entrypoint. They all run ``flows.pipeline.run_export``."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from prefect import flow

from entities.customers import CUSTOMERS
from entities.orders import ORDERS
from entities.points_expirations import POINTS_EXPIRATIONS
from entities.products import PRODUCTS
from entities.publications import PUBLICATIONS
from entities.redemptions import REDEMPTIONS
from entities.skus import SKUS
from entities.voucher_transactions import VOUCHER_TRANSACTIONS
from entities.vouchers import VOUCHERS
from exportflow.request import Compression, Header
from exportflow.request import ExportFormat as Format
from flows.pipeline import run_export


def _request(args: dict[str, Any]) -> dict[str, Any]:
    """A flow's arguments as ``run_export`` takes them (one place for every entity's flow)."""
    args = dict(args)
    args["validate"] = args.pop("validation")
    args["neutralize_formulas"] = None if args["neutralize_formulas"] else False
    return args


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
    return run_export(VOUCHERS, **_request(locals()))


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
    return run_export(ORDERS, **_request(locals()))


@flow(name="export-redemptions", description=REDEMPTIONS.description)
def export_redemptions(
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
    return run_export(REDEMPTIONS, **_request(locals()))


@flow(name="export-publications", description=PUBLICATIONS.description)
def export_publications(
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
    return run_export(PUBLICATIONS, **_request(locals()))


@flow(name="export-customers", description=CUSTOMERS.description)
def export_customers(
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
    return run_export(CUSTOMERS, **_request(locals()))


@flow(name="export-products", description=PRODUCTS.description)
def export_products(
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
    return run_export(PRODUCTS, **_request(locals()))


@flow(name="export-skus", description=SKUS.description)
def export_skus(
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
    return run_export(SKUS, **_request(locals()))


@flow(name="export-points-expirations", description=POINTS_EXPIRATIONS.description)
def export_points_expirations(
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
    return run_export(POINTS_EXPIRATIONS, **_request(locals()))


@flow(name="export-voucher-transactions", description=VOUCHER_TRANSACTIONS.description)
def export_voucher_transactions(
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
    return run_export(VOUCHER_TRANSACTIONS, **_request(locals()))


FLOWS = {
    VOUCHERS.name: export_vouchers,
    ORDERS.name: export_orders,
    REDEMPTIONS.name: export_redemptions,
    PUBLICATIONS.name: export_publications,
    CUSTOMERS.name: export_customers,
    PRODUCTS.name: export_products,
    SKUS.name: export_skus,
    POINTS_EXPIRATIONS.name: export_points_expirations,
    VOUCHER_TRANSACTIONS.name: export_voucher_transactions,
}
"""Entity name -> its flow; ``tests/test_catalog.py`` proves it matches ``entities.ENTITIES``."""
