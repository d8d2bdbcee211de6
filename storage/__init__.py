"""Where export files live: one ``Storage`` interface over Prefect storage blocks.

``storage_for(block)`` picks the implementation by the block's type (``S3Bucket`` ->
``storage.s3``, ``LocalFileSystem`` -> ``storage.local``) and names the block type when it is
not supported. A stored file is described once by a ``Stored`` record (storage kind, bucket,
full key, location) that the job keeps; download, delete, expiry and erasure use that record,
never a key rebuilt from today's settings.
"""

from __future__ import annotations

from storage.base import Storage, Stored, StoredObject
from storage.blocks import configured_block, storage_for
from storage.keys import object_key

__all__ = ["Storage", "Stored", "StoredObject", "configured_block", "object_key", "storage_for"]
