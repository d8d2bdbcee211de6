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

    A transient failure (S3 5xx, connection) raises ``TransientError``: the pipeline retries
    the whole export as a new attempt.
    """
    key = object_key(job.tenant, job.exported_object, job.id, produced.extension, job.created_at)
    settings = get_settings()
    stored = storage_from_settings(settings).put(produced.path, key)
    stored = replace(stored, block=settings.storage_block)
    get_run_logger().info("stored %s", stored.location)
    return stored
