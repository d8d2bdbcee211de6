"""Prefect task: publish a finished file under its final key through the storage block."""

from __future__ import annotations

from dataclasses import replace

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from core.settings import get_settings
from db.jobs import Job
from storage import Stored, object_key
from storage.blocks import storage_from_settings
from tasks.write import Produced


@task(name="store-export-file", cache_policy=NO_CACHE)
def store_export_file(job: Job, produced: Produced) -> Stored:
    """Publish the file under ``{tenant}/exports/{yyyy}/{mm}/{object}-{id}.{ext}``.

    The storage is the entity's own block where ``entity_storage`` names one (else the
    configured storage), with the entity's ACL from ``entity_acl`` (default ``private``); the
    returned record (block, bucket, full key, ACL) is what the job keeps. A transient failure
    (S3 5xx, connection) raises ``TransientError``: the pipeline retries the whole export as a
    new attempt.
    """
    key = object_key(job.tenant, job.exported_object, job.id, produced.extension, job.created_at)
    settings = get_settings()
    block = settings.entity_storage.get(job.exported_object) or settings.storage_block
    acl = settings.entity_acl.get(job.exported_object, "private")
    stored = storage_from_settings(settings, block).put(produced.path, key, acl=acl)
    stored = replace(stored, block=block, acl=acl if stored.storage == "s3" else None)
    get_run_logger().info("stored %s", stored.location)
    return stored
