"""The one model of an export request's parameters (Voucherify's ``parameters`` object, extended).

The API body's ``parameters``, every flow's ``parameters`` (Prefect renders the run form from
it), the CLI options and the job row's stored parameters are this model. Each entity refines
``fields`` and ``order`` into enums of its own names (``entities.catalog.Entity.parameters_model``);
what a value means is checked against the entity in ``query.plan.plan_export``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.formats import FORMATS, Compression

Header = Literal["names", "labels"]

MAX_PARTS = 256
"""Most parts one export may be split into (S3 allows 10,000 parts per object)."""


class ExportParameters(BaseModel):
    """What to export and how: columns, order, filters, format and its options."""

    model_config = ConfigDict(extra="forbid", title="Export parameters")

    fields: list[str] | None = Field(
        None,
        description="Columns in order; absent = the entity's default fields. `metadata` adds one"
        " column per metadata key, `metadata.<key>` one column.",
    )
    order: str | None = Field(
        None, description="Sort key; `-` prefix sorts descending. Absent = the entity's default."
    )
    filters: dict[str, Any] | None = Field(
        None,
        description='Voucherify filters: {"junction": "and", "<field>": {"conditions":'
        ' {"$in": [...]}}}; dates may be relative to the run (`-P1D`, `-P1M`).',
    )
    format: str = Field(
        "csv",
        description="File format: "
        + "; ".join(f"`{n}` {s.description}" for n, s in FORMATS.items()),
        json_schema_extra={"enum": list(FORMATS)},
    )
    compression: Compression | None = Field(
        None, description="`zstd` (smaller, faster) or `gzip`, for csv, json and jsonl."
    )
    partition_by: str | None = Field(
        None, description="One file per distinct value of this field, packaged in one ZIP."
    )
    header: Header | None = Field(
        None, description="Header row of field `names` (CSV default) or human `labels`."
    )
    neutralize_formulas: bool | None = Field(
        None,
        description="CSV: prefix ' to text starting with = + - @ tab CR NUL (default: on).",
    )
    title: str | None = Field(
        None,
        max_length=200,
        pattern=r"^[^\x00-\x1f]*$",
        description="XLSX title row / PDF title (no control characters).",
    )
    validation: bool = Field(
        True, description="Check each chunk against the entity's Great Expectations suite."
    )
    parallelism: int | Literal["auto"] = Field(
        1,
        description="Parts read in parallel under one snapshot and joined into one file: 1 ="
        " one process; `auto` = by the row count and the workers (1 for small exports, XLSX,"
        " PDF and partition_by).",
    )

    @field_validator("parallelism", mode="before")
    @classmethod
    def _check_parallelism(cls, value: Any) -> Any:
        if isinstance(value, str) and value.lower() == "auto":
            return "auto"
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_PARTS:
            raise ValueError(f"parallelism must be an integer 1..{MAX_PARTS} or 'auto'")
        return value

    expires_in: int | None = Field(
        None,
        ge=60,
        le=3650 * 86_400,
        description="Seconds the finished file is kept; absent = the service's TTL"
        " (EXPORTFLOW_RESULT_TTL_DAYS), never longer.",
    )

    @field_validator("format", mode="before")
    @classmethod
    def _known_format(cls, value: Any) -> str:
        spec = FORMATS.get(value.lower()) if isinstance(value, str) else None
        if spec is None:
            raise ValueError(f"unknown format {value!r}; allowed: {', '.join(FORMATS)}")
        return spec.name

    @field_validator("compression", mode="before")
    @classmethod
    def _lower_compression(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    def stored(self) -> dict[str, Any]:
        """The parameters as stored on the job and shown by the API (defaults left out, but
        the format always named)."""
        return {**self.model_dump(mode="json", exclude_defaults=True), "format": self.format}
