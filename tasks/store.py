"""Store: put a finished export file under its final key through a Prefect storage block.

``LocalFileSystem`` (a folder under ``EXPORTFLOW_HOME``) is the embedded default; an
``S3Bucket`` is used when ``EXPORTFLOW_STORAGE_BLOCK`` names a saved one or
``EXPORTFLOW_S3_BUCKET`` is set. Keys are built and checked here, not by the block: prefect-aws
joins keys with pathlib, so an absolute or ``..`` path would escape the folder. An object
appears under its final key only complete: S3 multipart uploads publish atomically, and the
local block gets a rename from a temp name.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from exportflow.errors import InvalidRequest, TransientError
from exportflow.settings import Settings, get_settings

TENANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


def check_tenant(tenant: str) -> str:
    """Tenants name a folder: letters, digits, ``_ . -``, no path tricks."""
    if not isinstance(tenant, str) or not TENANT.match(tenant) or ".." in tenant:
        raise InvalidRequest(
            f"invalid tenant {tenant!r}: use 1-63 letters, digits, '_', '.', '-'",
            key="invalid_tenant",
        )
    return tenant


def object_key(
    tenant: str, exported_object: str, job_id: uuid.UUID, extension: str, when: datetime
) -> str:
    """``{tenant}/exports/{yyyy}/{mm}/{exported_object}-{job_id}.{ext}``, validated."""
    key = (
        f"{check_tenant(tenant)}/exports/{when:%Y}/{when:%m}/"
        f"{exported_object}-{uuid.UUID(str(job_id))}.{extension}"
    )
    parts = key.split("/")
    if key.startswith("/") or "\\" in key or any(p in ("", ".", "..") for p in parts):
        raise InvalidRequest(f"refusing unsafe storage key {key!r}", key="invalid_key")
    return key


@dataclass(frozen=True)
class Stored:
    storage: str
    """``local`` or ``s3``."""
    key: str
    location: str
    """Absolute path (local) or ``s3://bucket/key``."""


def storage_block(settings: Settings | None = None) -> Any:
    """The configured block: a saved one by name, an S3Bucket from settings, or local."""
    settings = settings or get_settings()
    if settings.storage_block:
        from prefect.blocks.core import Block

        return Block.load(settings.storage_block)
    if settings.s3_bucket:
        from prefect_aws import AwsClientParameters, AwsCredentials, S3Bucket

        credentials = AwsCredentials(
            region_name=settings.s3_region,
            aws_client_parameters=AwsClientParameters(
                endpoint_url=settings.s3_endpoint_url, config={"signature_version": "s3v4"}
            ),
        )
        return S3Bucket(
            bucket_name=settings.s3_bucket,
            credentials=credentials,
            bucket_folder=settings.s3_folder,
        )
    from prefect.filesystems import LocalFileSystem

    path = settings.local_storage_path
    path.mkdir(parents=True, exist_ok=True)
    return LocalFileSystem(basepath=str(path))


def is_s3(block: Any) -> bool:
    return hasattr(block, "bucket_name")


def put_file(block: Any, local: Path, key: str) -> Stored:
    """Publish ``local`` under ``key``; never leaves a partial object under ``key``."""
    if is_s3(block):
        try:
            path = block.upload_from_path(str(local), key)
        except Exception as exc:  # botocore: endpoint down, 5xx, throttled
            if _is_transient(exc):
                raise TransientError(f"uploading to S3 failed: {exc}") from exc
            raise
        return Stored("s3", key, f"s3://{block.bucket_name}/{path}")
    final = Path(block._resolve_path(key))
    final.parent.mkdir(parents=True, exist_ok=True)
    partial = final.with_name(f".{final.name}.partial-{uuid.uuid4().hex}")
    try:
        try:
            os.replace(local, final)  # same filesystem: atomic, no copy
        except OSError:
            shutil.copyfile(local, partial)
            os.replace(partial, final)
    finally:
        partial.unlink(missing_ok=True)
    return Stored("local", key, str(final))


def delete_object(block: Any, key: str) -> None:
    """Remove a stored export (missing is fine)."""
    if is_s3(block):
        client = block.credentials.get_s3_client()
        client.delete_object(Bucket=block.bucket_name, Key=block._resolve_path(key))
        return
    Path(block._resolve_path(key)).unlink(missing_ok=True)


def _is_transient(exc: Exception) -> bool:
    name = type(exc).__name__
    if name in (
        "EndpointConnectionError",
        "ConnectTimeoutError",
        "ReadTimeoutError",
        "ConnectionClosedError",
    ):
        return True
    status = getattr(exc, "response", {}).get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return bool(status >= 500 or status == 429)
