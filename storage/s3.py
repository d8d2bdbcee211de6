"""An ``S3Bucket`` block (prefect-aws): multipart uploads, SigV4 presigned URLs.

Uploads go through the block (``upload_from_path``: boto3's managed multipart upload, which
publishes the object only when complete); the full key it returns, folder included, is what
the job records. Downloads and deletes use that recorded bucket and key with a client built
from the block's credentials, forced to SigV4 whatever the block's client config says (SigV2
URLs are refused by buckets created since 2020). No private method of the block is used.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from core.errors import TransientError
from storage.base import StorageKind, Stored, StoredObject

_TRANSIENT_ERRORS = (
    "EndpointConnectionError",
    "ConnectTimeoutError",
    "ReadTimeoutError",
    "ConnectionClosedError",
)


def is_transient(exc: BaseException) -> bool:
    """Connection problems, throttling and S3 5xx: worth another attempt."""
    if type(exc).__name__ in _TRANSIENT_ERRORS:
        return True
    response = getattr(exc, "response", None) or {}
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return bool(status >= 500 or status == 429)


class S3Storage:
    kind: StorageKind = "s3"

    def __init__(self, block: Any) -> None:
        self.block = block
        self.bucket = str(block.bucket_name)
        params = block.credentials.aws_client_parameters
        self.endpoint_url = getattr(params, "endpoint_url", None)

    def client(self) -> Any:
        """A boto3 S3 client from the block's credentials, always signing with SigV4."""
        from botocore.config import Config

        credentials = self.block.credentials
        overrides = dict(credentials.aws_client_parameters.get_params_override())
        config = overrides.pop("config", None)
        sigv4 = Config(signature_version="s3v4")
        overrides["config"] = config.merge(sigv4) if config is not None else sigv4
        return credentials.get_boto3_session().client("s3", **overrides)

    def put(self, local: Path, key: str, *, acl: str | None = None) -> Stored:
        extra = {"ExtraArgs": {"ACL": acl}} if acl and acl != "private" else {}
        try:
            full_key = str(self.block.upload_from_path(str(local), key, **extra))
        except Exception as exc:
            if is_transient(exc):
                raise TransientError(f"uploading to S3 failed: {exc}") from exc
            raise
        return Stored(
            "s3", full_key, f"s3://{self.bucket}/{full_key}", self.bucket, self.endpoint_url
        )

    def delete(self, stored: Stored) -> bool:
        client = self.client()
        bucket = stored.bucket or self.bucket
        existed = self.exists(stored)
        client.delete_object(Bucket=bucket, Key=stored.key)
        if self.exists(stored):
            raise OSError(f"s3://{bucket}/{stored.key} is still there after DELETE")
        return existed

    def exists(self, stored: Stored) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client().head_object(Bucket=stored.bucket or self.bucket, Key=stored.key)
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status == 404 or exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey"):
                return False
            raise
        return True

    def presign(
        self, stored: Stored, expires_s: int, filename: str, content_type: str
    ) -> str | None:
        url = self.client().generate_presigned_url(
            "get_object",
            Params={
                "Bucket": stored.bucket or self.bucket,
                "Key": stored.key,
                "ResponseContentDisposition": f'attachment; filename="{filename}"',
                "ResponseContentType": content_type,
            },
            ExpiresIn=expires_s,
        )
        return str(url)

    def local_path(self, stored: Stored) -> Path | None:
        return None

    def full_prefix(self, prefix: str) -> str:
        folder = str(self.block.bucket_folder or "").strip("/")
        return f"{folder}/{prefix}" if folder else prefix

    def list(self, prefix: str) -> Iterator[StoredObject]:
        paginator = self.client().get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.full_prefix(prefix)):
            for obj in page.get("Contents", []):
                yield StoredObject(obj["Key"], int(obj["Size"]), obj["LastModified"])

    def abort_uploads(self, prefix: str, older_than: datetime) -> int:
        client = self.client()
        aborted = 0
        paginator = client.get_paginator("list_multipart_uploads")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.full_prefix(prefix)):
            for upload in page.get("Uploads", []):
                if upload["Initiated"] < older_than:
                    client.abort_multipart_upload(
                        Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                    )
                    aborted += 1
        return aborted
