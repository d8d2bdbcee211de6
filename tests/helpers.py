"""Small helpers shared by tests: run a flow expecting failure, read files back."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from db.engine import get_engine
from db.jobs import Job, list_jobs
from flows.launch import run_here


def new_job(tenant: str = "demo", status: str = "SCHEDULED", **fields: Any) -> Job:
    """A job as the API creates it (not stored): a voucher CSV export with no progress yet."""
    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "tenant": tenant,
        "exported_object": "voucher",
        "format": "csv",
        "channel": "API",
        "status": status,
        "parameters": {},
        "total": None,
        "progress": 0,
        "result": None,
        "error": None,
        "flow_run_id": None,
        "created_at": datetime.now(UTC),
        "started_at": None,
        "finished_at": None,
        "expires_at": None,
    }
    return Job(**{**values, **fields})


def stored_job(
    tenant: str = "demo",
    channel: str = "CLI",
    parameters: dict[str, Any] | None = None,
    *,
    claimed: bool = False,
) -> Job:
    """A voucher export job stored through the jobs repository (SCHEDULED; IN_PROGRESS on its
    first attempt with ``claimed``); its format is the parameters' (csv by default)."""
    from db import jobs

    parameters = parameters or {}
    job = jobs.create_job(
        get_engine(),
        tenant=tenant,
        exported_object="voucher",
        format=str(parameters.get("format", "csv")),
        channel=channel,
        parameters=parameters,
    )
    return jobs.claim_job(get_engine(), job.id, None) if claimed else job


def latest_job(tenant: str) -> Job:
    page, _ = list_jobs(get_engine(), tenant=tenant, limit=1)
    return page[0]


def export(flow: Callable[..., Any], tenant: str = "demo", **parameters: Any) -> dict[str, Any]:
    """Run an entity's flow with these export parameters (as the Prefect form passes them),
    in this process as the CLI does (``flows.launch.run_here``)."""
    return dict(run_here(flow, tenant=tenant, parameters=parameters or None))


def run_failing(
    flow: Callable[..., Any], tenant: str = "demo", **parameters: Any
) -> tuple[Job, BaseException]:
    """Run a flow that must fail; return its job row and the exception it raised."""
    with pytest.raises(Exception) as info:
        export(flow, tenant, **parameters)
    return latest_job(tenant), info.value


def read_csv(path: str | Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    return rows[0], rows[1:]


def read_csv_bytes(data: bytes) -> tuple[list[str], list[list[str]]]:
    rows = list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))
    return rows[0], rows[1:]


def sql_rows(pg: psycopg.Connection, query: str, params: Any = None) -> list[tuple[Any, ...]]:
    return list(pg.execute(query, params).fetchall())


def as_csv_text(value: Any) -> str:
    """How the CSV writer renders a value read by psycopg (NULL -> empty)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if hasattr(value, "isoformat") and hasattr(value, "hour"):
        return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return str(value)
