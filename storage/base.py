"""The storage interface and the record of a stored file."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Protocol

StorageKind = Literal["local", "s3"]


@dataclass(frozen=True)
class Stored:
    """Where one file is: enough to download or delete it whatever the settings are later."""

    storage: StorageKind
    key: str
    """The full key: inside the bucket (folder included) or relative to the local root."""
    location: str
    """``s3://bucket/key`` or the absolute local path."""
    bucket: str | None = None
    endpoint_url: str | None = None
    block: str | None = None
    """The saved block it went through (``s3-bucket/exports``), if one was configured."""
    acl: str | None = None
    """The S3 object ACL it was written with (``private`` unless routed otherwise)."""

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_result(cls, result: dict[str, Any]) -> Stored:
        """The record a job's ``result`` holds (older rows: derived from ``location``)."""
        location = str(result["location"])
        bucket = result.get("bucket")
        key = str(result["key"])
        if result.get("storage") == "s3" and location.startswith("s3://"):
            bucket_from_location, _, full_key = location.removeprefix("s3://").partition("/")
            bucket = bucket or bucket_from_location
            key = full_key or key
        return cls(
            storage="s3" if result.get("storage") == "s3" else "local",
            key=key,
            location=location,
            bucket=bucket,
            endpoint_url=result.get("endpoint_url"),
            block=result.get("block"),
            acl=result.get("acl"),
        )


@dataclass(frozen=True)
class StoredObject:
    """One object found by ``Storage.list`` (for cleanup)."""

    key: str
    size: int
    modified: datetime


@dataclass(frozen=True)
class Assembled:
    """One object made of part objects (``Storage.concatenate``)."""

    stored: Stored
    bytes: int
    sha256: str
    method: str
    """``part-copy`` (S3, server-side), ``concatenate`` (local file) or ``download``
    (S3 parts too small for part-copy: joined on this machine and uploaded)."""


class Storage(Protocol):
    kind: StorageKind

    def put(self, local: Path, key: str, *, acl: str | None = None) -> Stored:
        """Publish ``local`` under ``key``; nothing appears under ``key`` until complete."""
        ...

    def delete(self, stored: Stored) -> bool:
        """Remove the file and verify it is gone; False if it was already absent."""
        ...

    def exists(self, stored: Stored) -> bool: ...

    def presign(
        self, stored: Stored, expires_s: int, filename: str, content_type: str
    ) -> str | None:
        """A time-limited URL for the file, or None where the API streams it itself."""
        ...

    def local_path(self, stored: Stored) -> Path | None:
        """The file on this machine, where there is one."""
        ...

    def list(self, prefix: str) -> Iterator[StoredObject]:
        """Objects under ``prefix`` (full keys)."""
        ...

    def abort_uploads(self, prefix: str, older_than: datetime) -> int:
        """Abort unfinished multipart uploads under ``prefix``; returns how many."""
        ...

    def download(self, key: str, local: Path) -> None:
        """Copy the object under the full ``key`` (as ``put`` recorded it) to ``local``."""
        ...

    def concatenate(self, parts: Sequence[str], key: str, workdir: Path) -> Assembled:
        """Publish the bytes of the objects ``parts`` (full keys, in order) as one object
        under ``key``; nothing appears under ``key`` until complete. The parts stay."""
        ...

    def remove_prefix(self, prefix: str) -> int:
        """Delete every object under ``prefix`` (temp files of a parallel export)."""
        ...
