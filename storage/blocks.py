"""Choosing storage: the configured Prefect block, and the implementation for its type."""

from __future__ import annotations

from typing import Any

from core.errors import ExportError
from core.settings import Settings
from storage.base import Storage, Stored


class UnsupportedStorage(ExportError):
    """The configured block is of a type exportflow cannot store exports in."""

    key = "unsupported_storage"


def configured_block(settings: Settings, block_name: str | None = None) -> Any:
    """The block exports are stored through: a saved one by name, an S3Bucket from settings,
    or a ``LocalFileSystem`` under ``<home>/storage``."""
    name = block_name or settings.storage_block
    if name:
        from prefect.blocks.core import Block

        return Block.load(name)
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


def storage_for(block: Any) -> Storage:
    """The ``Storage`` for a block, chosen by its type (never by duck typing)."""
    from prefect.filesystems import LocalFileSystem

    if isinstance(block, LocalFileSystem):
        from storage.local import LocalStorage

        return LocalStorage(block)
    from prefect_aws import S3Bucket

    if isinstance(block, S3Bucket):
        from storage.s3 import S3Storage

        return S3Storage(block)
    raise UnsupportedStorage(
        f"storage block type {type(block).__name__!r} is not supported; use an S3Bucket"
        " (prefect-aws) or a LocalFileSystem block",
        details={"block_type": type(block).__name__},
    )


def storage_from_settings(settings: Settings, block_name: str | None = None) -> Storage:
    return storage_for(configured_block(settings, block_name))


def storage_for_record(stored: Stored, settings: Settings) -> Storage:
    """The storage that holds a recorded file, whatever the storage settings say today.

    The block it went through is loaded again by name; without one, an S3 record gets a client
    from today's S3 settings (credentials, endpoint) aimed at the recorded bucket and key, and
    a local record is a path.
    """
    if stored.block:
        return storage_for(configured_block(settings, stored.block))
    if stored.storage == "s3":
        from prefect_aws import AwsClientParameters, AwsCredentials, S3Bucket

        from storage.s3 import S3Storage

        credentials = AwsCredentials(
            region_name=settings.s3_region,
            aws_client_parameters=AwsClientParameters(
                endpoint_url=stored.endpoint_url or settings.s3_endpoint_url
            ),
        )
        return S3Storage(S3Bucket(bucket_name=str(stored.bucket), credentials=credentials))
    from prefect.filesystems import LocalFileSystem

    from storage.local import LocalStorage

    return LocalStorage(LocalFileSystem(basepath=str(settings.local_storage_path)))
