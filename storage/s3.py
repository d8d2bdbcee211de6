"""An ``S3Bucket`` block (prefect-aws): multipart uploads, SigV4 presigned URLs.

Uploads go through the block (``upload_from_path``: boto3's managed multipart upload, which
publishes the object only when complete); the full key it returns, folder included, is what
the job records. Downloads and deletes use that recorded bucket and key with a client built
from the block's credentials, forced to SigV4 whatever the block's client config says (SigV2
URLs are refused by buckets created since 2020). No private method of the block is used.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from core.errors import TransientError
from storage.base import Assembled, StorageKind, Stored, StoredObject

MIN_PART = 5 << 20
"""S3's smallest part of a multipart upload (all but the last)."""
MAX_PART = 5 << 30
"""S3's largest part (and largest source range of one ``UploadPartCopy``)."""
MAX_PARTS = 10_000

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

    def download(self, key: str, local: Path) -> None:
        self.client().download_file(self.bucket, key, str(local))

    def _stored(self, full_key: str) -> Stored:
        return Stored(
            "s3", full_key, f"s3://{self.bucket}/{full_key}", self.bucket, self.endpoint_url
        )

    def concatenate(self, parts: Sequence[str], key: str, workdir: Path) -> Assembled:
        """Server-side: one multipart upload with an ``UploadPartCopy`` per part (split into
        ranges of at most 5 GiB). S3 wants every part but the last to be 5 MiB or more; when a
        part is smaller, the parts are joined here and uploaded as one file instead. The
        sha256 is computed by reading the finished object once (S3 keeps no sha256 of a whole
        multipart object)."""
        client = self.client()
        sizes = [int(client.head_object(Bucket=self.bucket, Key=p)["ContentLength"]) for p in parts]
        ranges = _copy_ranges(sizes)
        if ranges is None:
            return self._join_here(parts, key, workdir)
        full_key = self.full_prefix(key)
        upload = client.create_multipart_upload(Bucket=self.bucket, Key=full_key)
        upload_id = upload["UploadId"]
        try:
            done = []
            for number, (index, start, end) in enumerate(ranges, start=1):
                copied = client.upload_part_copy(
                    Bucket=self.bucket,
                    Key=full_key,
                    UploadId=upload_id,
                    PartNumber=number,
                    CopySource={"Bucket": self.bucket, "Key": parts[index]},
                    CopySourceRange=f"bytes={start}-{end}",
                )
                done.append({"PartNumber": number, "ETag": copied["CopyPartResult"]["ETag"]})
            client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=full_key,
                UploadId=upload_id,
                MultipartUpload={"Parts": done},
            )
        except BaseException as exc:
            client.abort_multipart_upload(Bucket=self.bucket, Key=full_key, UploadId=upload_id)
            if isinstance(exc, Exception) and is_transient(exc):
                raise TransientError(f"assembling on S3 failed: {exc}") from exc
            raise
        digest = hashlib.sha256()
        size = 0
        body = client.get_object(Bucket=self.bucket, Key=full_key)["Body"]
        for block in body.iter_chunks(1 << 20):
            digest.update(block)
            size += len(block)
        return Assembled(self._stored(full_key), size, digest.hexdigest(), "part-copy")

    def _join_here(self, parts: Sequence[str], key: str, workdir: Path) -> Assembled:
        joined = workdir / "assembled"
        piece = workdir / "piece"
        digest = hashlib.sha256()
        size = 0
        with joined.open("wb") as out:
            for part in parts:
                self.download(part, piece)
                with piece.open("rb") as src:
                    while block := src.read(1 << 20):
                        digest.update(block)
                        out.write(block)
                        size += len(block)
                piece.unlink()
        stored = self.put(joined, key)
        joined.unlink(missing_ok=True)
        return Assembled(stored, size, digest.hexdigest(), "download")

    def remove_prefix(self, prefix: str) -> int:
        client = self.client()
        keys = [obj.key for obj in self.list(prefix)]
        for start in range(0, len(keys), 1000):
            client.delete_objects(
                Bucket=self.bucket,
                Delete={"Objects": [{"Key": k} for k in keys[start : start + 1000]], "Quiet": True},
            )
        return len(keys)


def _copy_ranges(sizes: list[int]) -> list[tuple[int, int, int]] | None:
    """(part index, first byte, last byte) per upload part, or None if S3 would refuse them:
    a non-last part under 5 MiB, or more than 10,000 upload parts."""
    ranges: list[tuple[int, int, int]] = []
    for index, size in enumerate(sizes):
        last = index == len(sizes) - 1
        if size == 0 or (size < MIN_PART and not last):
            return None
        pieces = math.ceil(size / MAX_PART)
        step = math.ceil(size / pieces)
        for start in range(0, size, step):
            ranges.append((index, start, min(start + step, size) - 1))
    return ranges if len(ranges) <= MAX_PARTS else None
