"""Storage keys: ``{tenant}/exports/{yyyy}/{mm}/{exported_object}-{job_id}.{ext}``, checked.

Keys are built and checked here, not by the block: prefect-aws joins keys with pathlib, so an
absolute or ``..`` path would escape the folder.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from core.errors import InvalidRequest
from core.tenants import check_tenant


def object_key(
    tenant: str, exported_object: str, job_id: uuid.UUID, extension: str, when: datetime
) -> str:
    """The key of an export's file, validated."""
    key = (
        f"{check_tenant(tenant)}/exports/{when:%Y}/{when:%m}/"
        f"{exported_object}-{uuid.UUID(str(job_id))}.{extension}"
    )
    check_key(key)
    return key


def check_key(key: str) -> str:
    parts = key.split("/")
    if key.startswith("/") or "\\" in key or any(p in ("", ".", "..") for p in parts):
        raise InvalidRequest(f"refusing unsafe storage key {key!r}", key="invalid_key")
    return key


def job_key_prefix(tenant: str, exported_object: str, job_id: uuid.UUID, when: datetime) -> str:
    """The part of a job's key before the extension: every object of one export starts so."""
    return object_key(tenant, exported_object, job_id, "x", when)[: -len(".x")]


def parts_prefix(tenant: str, job_id: uuid.UUID) -> str:
    """Where the part files of a parallel export wait for assembly: ``{tenant}/tmp/parts/{id}``."""
    return check_key(f"{check_tenant(tenant)}/tmp/parts/{uuid.UUID(str(job_id))}")


def part_key(tenant: str, job_id: uuid.UUID, part: int, attempt: int, extension: str) -> str:
    """``{tenant}/tmp/parts/{job_id}/part-00003-a1.csv.gz``: one file per part attempt."""
    return check_key(f"{parts_prefix(tenant, job_id)}/part-{part:05d}-a{attempt}.{extension}")
