"""Wire objects of the exports API, shaped like Voucherify's export and list objects."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from core.params import ExportParameters
from core.status import PublicStatus, Status


class ExportCreate(BaseModel):
    """Body of ``POST /v1/exports``."""

    model_config = ConfigDict(extra="forbid")

    exported_object: str = Field(description="voucher, order, ... (see the entity catalog).")
    parameters: ExportParameters | None = Field(
        None, description="fields, order, filters, format, compression; absent = defaults."
    )


class ExpectationOutcome(BaseModel):
    """One Great Expectations expectation over the whole export."""

    expectation: str = Field(
        description="GX expectation type, e.g. expect_column_values_to_not_be_null."
    )
    kind: str = Field(
        description="The entity declaration's kind: not_null, in_set, between, match_regex."
    )
    column: str
    args: dict[str, Any] = Field(
        default_factory=dict, description="Its arguments (set, bounds, regex)."
    )
    success: bool
    unexpected_count: int = 0
    unexpected_percent: float = 0.0
    examples: list[Any] = Field(default_factory=list, description="Up to 5 unexpected values.")
    observed: dict[str, Any] = Field(
        default_factory=dict,
        description="rows and nulls checked; min/max (between); distinct values (in_set).",
    )


class QualityReport(BaseModel):
    """The data-quality checks an export ran (the Prefect UI shows the same as an artifact)."""

    engine: str = "great_expectations"
    success: bool | None = Field(None, description="All expectations held; null = not validated.")
    skipped: str | None = Field(None, description="Why nothing was validated, when so.")
    on_invalid: str | None = Field(None, description="fail (the export fails) or warn.")
    rows_checked: int | None = None
    chunks: int | None = None
    failed_chunks: int | None = None
    expectations: list[ExpectationOutcome] = Field(default_factory=list)


class ExportResult(BaseModel):
    """Where the finished file is and what it holds."""

    url: str = Field(description="Download URL, carrying the export's download token.")
    content_type: str | None = None
    bytes: int | None = None
    row_count: int | None = None
    sha256: str | None = None
    expires_at: datetime | None = None
    quality: QualityReport | None = Field(
        None, description="Great Expectations results: each expectation, pass/fail, observed."
    )


class QueueInfo(BaseModel):
    """Why a SCHEDULED export has not started yet."""

    position: int = Field(description="1 = the next of this tenant's waiting exports.")
    reason: str = Field(description="What it waits for.")
    running_for_tenant: int
    tenant_limit: int = Field(description="Exports of one tenant that may run at once.")
    running_total: int
    total_limit: int = Field(description="Exports that may run at once overall.")


class ExportObject(BaseModel):
    """The export object; ``status`` stays within Voucherify's four values."""

    id: str
    object: Literal["export"] = "export"
    created_at: datetime
    status: PublicStatus
    state: Status = Field(description="exportflow's full status (adds EXPIRED and CANCELLED).")
    channel: str = Field(description="API, PREFECT_UI, SCHEDULE or CLI.")
    exported_object: str
    parameters: dict[str, Any]
    result: ExportResult | None = None
    total: int | None = Field(None, description="Rows to export (known once it started).")
    processed: int = Field(0, description="Rows written so far.")
    error: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    expires_at: datetime | None = None
    queue: QueueInfo | None = Field(
        None, description="While SCHEDULED: its place among the tenant's waiting exports, why."
    )
    requested_by: str | None = Field(
        None, description="Who asked: API key id, Prefect user/deployment, or CLI user."
    )


class ExportList(BaseModel):
    """``GET /v1/exports``: newest first."""

    object: Literal["list"] = "list"
    data_ref: Literal["exports"] = "exports"
    exports: list[ExportObject]
    total: int
