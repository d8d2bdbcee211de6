"""Settings read from the environment (prefix ``EXPORTFLOW_``) and ``.env``.

Production points the same code at an external PostgreSQL, S3 and a Prefect server through
these settings alone; with none set, everything runs embedded under ``EXPORTFLOW_HOME``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field
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
        2 << 20,
        ge=1 << 16,
        description="Bytes of COPY output parsed into one chunk (batch); bounds memory in flight.",
    )
    progress_every_s: float = Field(
        1.0, ge=0, description="Minimum seconds between progress updates of a running job."
    )
    result_ttl_days: int = Field(
        7, ge=1, description="Days a finished export's file is kept (expires_at)."
    )
    statement_timeout_s: int = Field(
        0, ge=0, description="PostgreSQL statement_timeout for export reads; 0 = none."
    )

    @property
    def local_storage_path(self) -> Path:
        return (self.storage_path or self.home / "storage").resolve()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
