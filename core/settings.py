"""Settings read from the environment (prefix ``EXPORTFLOW_``) and ``.env``.

Production points the same code at an external PostgreSQL, S3 and a Prefect server through
these settings alone; with none set, everything runs embedded under ``EXPORTFLOW_HOME``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EXPORTFLOW_", env_file=".env", extra="ignore")

    home: Path = Field(
        Path(".exportflow"),
        description="Folder for embedded state: PostgreSQL data, local export storage, temp files.",
    )
    database_url: str | None = Field(
        None,
        validation_alias=AliasChoices("EXPORTFLOW_DATABASE_URL", "DATABASE_URL"),
        description="SQLAlchemy/libpq URL of PostgreSQL; unset = embedded server under `home`.",
    )
    storage_block: str | None = Field(
        None,
        description="Name of a saved storage block, e.g. `s3-bucket/exports`; overrides the rest.",
    )
    s3_bucket: str | None = Field(None, description="S3 bucket for exports (builds an S3Bucket).")
    s3_endpoint_url: str | None = Field(
        None, description="S3-compatible endpoint (MinIO, moto, ...); unset = AWS."
    )
    s3_region: str = Field("us-east-1", description="Region for S3 requests and presigning.")
    s3_folder: str = Field("", description="Folder inside the bucket that holds all exports.")
    storage_path: Path | None = Field(
        None, description="Folder of the local storage; default `<home>/storage`."
    )
    chunk_bytes: int = Field(
        1 << 20,
        ge=1 << 12,
        description="Bytes of COPY output parsed into one chunk (batch, ~24k vouchers; a Parquet"
        " row group); bounds memory in flight. 1 MB instead of 2: -9 MB at peak for a 1M-row CSV"
        " or Parquet export, the 100k-row one unchanged, ~3% more CPU.",
    )
    validate_rows: int = Field(
        250000,
        ge=1,
        description="Rows Great Expectations checks in one call: chunks are gathered until they"
        " hold this many. A call costs 17-45 ms of Python whatever its rows (plus ~0.1 ms per"
        " 1k rows); 1 = every chunk alone (~2.5x the GX time of a 1M-row export). 250k instead"
        " of 100k: 4 calls instead of 9 for 1M vouchers, -0.3 to -0.45 s of CPU, +12 MB at peak.",
    )
    head_start: bool = Field(
        True,
        description="Let a deployment run launched for a job open its snapshot and start its"
        " query while Prefect is still starting the run (`tasks.headstart`); off = the"
        " pipeline opens it when it reaches the stream.",
    )
    head_start_parallel_workers: int = Field(
        2,
        ge=0,
        description="Most PostgreSQL parallel workers a head start's query may use (never more"
        " than the server's `max_parallel_workers_per_gather`). It runs while Prefect starts"
        " the run: with PostgreSQL on the worker's machine and few cores, fewer workers leave"
        " that start more CPU.",
    )
    result_ttl_days: int = Field(
        7,
        ge=1,
        le=3650,
        description="Days a finished export's file is kept (expires_at); a request may ask for"
        " less with `expires_in`. The maintenance flow deletes the file and sets EXPIRED.",
    )
    job_retention_days: int = Field(
        90,
        ge=1,
        description="Days a finished job row (ERROR, CANCELLED, EXPIRED with its file gone) is"
        " kept before the maintenance flow purges it.",
    )
    idempotency_ttl_s: int = Field(
        86_400, ge=60, description="Seconds an `Idempotency-Key` replay is remembered."
    )
    audit_retention_days: int = Field(
        400, ge=1, description="Days audit events (export_audit) are kept."
    )
    max_running_per_tenant: int = Field(
        2,
        ge=1,
        description="Exports of one tenant running at once (every channel); the rest wait"
        " SCHEDULED. A Prefect global concurrency limit `exportflow-tenant-<tenant>`.",
    )
    max_running_total: int = Field(
        4,
        ge=1,
        description="Exports running at once overall (Prefect global concurrency limit"
        " `exportflow-exports`).",
    )
    max_parameters_bytes: int = Field(
        64 * 1024,
        ge=1024,
        description="Largest export parameters object (bytes of its JSON); bigger is refused.",
    )
    entity_storage: dict[str, str] = Field(
        default_factory=dict,
        description='Storage block per exported object, e.g. {"customer": "s3-bucket/pii"};'
        " others use `storage_block` / the S3 settings / local storage.",
    )
    entity_acl: dict[str, str] = Field(
        default_factory=dict,
        description='S3 object ACL per exported object, e.g. {"order":'
        ' "bucket-owner-full-control"}; default `private`.',
    )
    pdf_max_rows: int = Field(
        10_000,
        ge=1,
        description="Largest PDF export (rows, by the preliminary count); bigger ones are"
        " rejected before reading with a pointer to XLSX or CSV.",
    )
    max_partitions: int = Field(
        1_000, ge=1, description="Most files one `partition_by` ZIP package may hold."
    )
    statement_timeout_s: int = Field(
        3600,
        ge=1,
        description="PostgreSQL statement_timeout of export reads (the COPY is one statement:"
        " this bounds a whole stream); never more than what is left of the run timeout.",
    )
    lock_timeout_s: int = Field(
        30,
        ge=1,
        description="PostgreSQL lock_timeout of export reads: how long an export waits for a"
        " table another transaction locked before it ends EXPIRED.",
    )
    run_timeout_s: int = Field(
        3600,
        ge=1,
        description="Longest an export attempt may run (claim to result); past it the export"
        " ends EXPIRED.",
    )
    lease_s: float = Field(
        60,
        gt=0,
        description="Lease of a running attempt, renewed as it streams (`heartbeat_s`); an"
        " attempt silent for this long is presumed lost and the reaper relaunches or fails its"
        " job.",
    )
    heartbeat_s: float = Field(
        0.5,
        ge=0,
        description="Most seconds between a streaming attempt's lease renewals (each also"
        " records the rows written so far and finds out whether the job was cancelled or taken"
        " over, which stops the stream): a renewal is one UPDATE on the writer's thread, so not"
        " one per chunk. 0 = at every chunk.",
    )
    launch_grace_s: float = Field(
        120,
        gt=0,
        description="How long a launched attempt may wait for a worker to claim it before the"
        " reaper launches it again.",
    )
    max_attempts: int = Field(
        3,
        ge=1,
        description="Attempts per export (first run + retries of transient failures and lost"
        " workers); after the last the job is ERROR.",
    )
    retry_backoff_s: float = Field(
        5,
        ge=0,
        description="Wait before attempt 2; doubled for each further attempt.",
    )
    chunk_pause_s: float = Field(
        0,
        ge=0,
        description="Pause after each chunk written: spares a busy database at the cost of"
        " speed (0 = none).",
    )
    max_parallelism: int = Field(
        8, ge=1, le=256, description="Most parts `parallelism: auto` splits one export into."
    )
    parallel_min_part_rows: int = Field(
        500_000,
        ge=1,
        description="`parallelism: auto` gives each part at least this many rows (by the"
        " preliminary count); smaller exports run as one process.",
    )
    parts_launcher: Literal["auto", "deployment", "inprocess"] = Field(
        "auto",
        description="How a parallel export runs its parts: `deployment` = one `export-part`"
        " run per part on the work pool; `inprocess` = threads of the coordinator (tests,"
        " dev); `auto` = deployment when the coordinator itself runs from a deployment.",
    )
    part_attempts: int = Field(
        3, ge=1, description="Attempts per part of a parallel export before the export fails."
    )
    part_chunk_pause_s: float = Field(
        0.0,
        ge=0,
        description="Fault drills only: seconds a part sleeps after each chunk, so it can be"
        " killed mid-stream. 0 in production.",
    )

    api_host: str = Field("127.0.0.1", description="Address the exports API listens on.")
    api_port: int = Field(8000, ge=0, le=65535, description="Port of the exports API.")
    prefect_host: str = Field("127.0.0.1", description="Address `make serve`'s Prefect binds.")
    prefect_port: int = Field(4200, ge=0, le=65535, description="Port of the Prefect server/UI.")
    public_url: str | None = Field(
        None,
        description="Base URL clients reach the API at (download links); default from request.",
    )
    launcher: Literal["deployment", "thread"] = Field(
        "deployment",
        description="How the API starts exports: `deployment` = run_deployment on a Prefect "
        "server (production); `thread` = the flow in-process in a thread (tests, dev).",
    )
    work_pool: str = Field("exportflow", description="Process work pool of the deployments.")
    workers: int = Field(
        1, ge=1, le=64, description="Process workers `make serve` starts on the work pool."
    )
    rate_limit_per_window: int = Field(
        10, ge=1, description="POST /v1/exports per API key per window (keys may override)."
    )
    rate_limit_window_s: int = Field(3600, ge=1, description="Length of the rate-limit window.")
    download_url_ttl_s: int = Field(
        3600, ge=1, le=7 * 86400, description="Lifetime of presigned S3 download URLs."
    )
    download_token_ttl_s: int = Field(
        86_400,
        ge=60,
        description="Lifetime of a download link (result.url); never past the file's expiry.",
    )
    max_page_limit: int = Field(100, ge=1, description="Largest `limit` of GET /v1/exports.")

    webhook_allow_private_urls: bool = Field(
        False,
        description="Accept webhook endpoints on loopback, link-local and private addresses"
        " (tests, a receiver on the same host); off in production against SSRF.",
    )
    webhook_timeout_s: float = Field(
        10.0, gt=0, le=60, description="Seconds one webhook delivery attempt may take."
    )
    webhook_retry_base_s: float = Field(
        30.0,
        gt=0,
        description="Delay before the first retry of a failed delivery; doubles per attempt.",
    )
    webhook_retry_max_s: float = Field(
        6 * 3600.0, gt=0, description="Longest delay between two attempts of one delivery."
    )
    webhook_max_attempts: int = Field(
        12, ge=1, le=50, description="Attempts of one delivery before it is given up (failed)."
    )

    @model_validator(mode="after")
    def _renewals_within_the_lease(self) -> Settings:
        """A streaming attempt must renew its lease well before it runs out, or the reaper
        takes a live export for a lost one and relaunches it."""
        if self.heartbeat_s * 2 > self.lease_s:
            raise ValueError(
                f"EXPORTFLOW_HEARTBEAT_S ({self.heartbeat_s:g} s) must be at most half of"
                f" EXPORTFLOW_LEASE_S ({self.lease_s:g} s): an attempt renews its lease at most"
                " that often, and one not renewed within the lease is taken for lost"
            )
        return self

    def backoff_s(self, attempt: int) -> float:
        """The wait before ``attempt`` (2, 3, ...): ``retry_backoff_s`` doubled per attempt."""
        return float(self.retry_backoff_s * 2 ** max(0, attempt - 2))

    @property
    def tmp_path(self) -> Path:
        """Where attempts keep their work files (``<home>/tmp``), one folder per attempt."""
        return (self.home / "tmp").resolve()

    @property
    def local_storage_path(self) -> Path:
        return (self.storage_path or self.home / "storage").resolve()


def settings_problems(exc: ValidationError) -> list[str]:
    """One line per problem of a ``Settings`` that failed validation, naming the variable:
    ``EXPORTFLOW_LEASE_S: Input should be greater than 0 (got '-1')``."""
    lines = []
    for error in exc.errors():
        names = [str(part) for part in error.get("loc", ())]
        message = str(error.get("msg", "")).removeprefix("Value error, ")
        if names:
            got = error.get("input")
            shown = f" (got {got!r})" if isinstance(got, str | int | float) else ""
            lines.append(f"EXPORTFLOW_{'_'.join(names).upper()}: {message}{shown}")
        else:
            lines.append(message)
    return lines


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
