"""A ``LocalFileSystem`` block: files under its base path, published by rename."""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from storage.base import Assembled, StorageKind, Stored, StoredObject
from storage.keys import check_key


class LocalStorage:
    kind: StorageKind = "local"

    def __init__(self, block: Any) -> None:
        self.root = Path(block.basepath or ".").expanduser().resolve()

    def _path(self, key: str) -> Path:
        path = (self.root / check_key(key)).resolve()
        if not path.is_relative_to(self.root):
            raise ValueError(f"key {key!r} escapes the storage folder")
        return path

    def put(self, local: Path, key: str, *, acl: str | None = None) -> Stored:
        final = self._path(key)
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
        os.chmod(final, 0o600)
        return Stored("local", key, str(final))

    def _file(self, stored: Stored) -> Path:
        return Path(stored.location)

    def delete(self, stored: Stored) -> bool:
        path = self._file(stored)
        existed = path.exists()
        path.unlink(missing_ok=True)
        if path.exists():
            raise OSError(f"could not remove {path}")
        return existed

    def exists(self, stored: Stored) -> bool:
        return self._file(stored).is_file()

    def presign(
        self, stored: Stored, expires_s: int, filename: str, content_type: str
    ) -> str | None:
        return None

    def local_path(self, stored: Stored) -> Path | None:
        return self._file(stored)

    def list(self, prefix: str) -> Iterator[StoredObject]:
        base = self.root / prefix if prefix else self.root
        if not base.exists():
            return
        for path in base.rglob("*"):
            if path.is_file():
                stat = path.stat()
                yield StoredObject(
                    str(path.relative_to(self.root)),
                    stat.st_size,
                    datetime.fromtimestamp(stat.st_mtime, UTC),
                )

    def abort_uploads(self, prefix: str, older_than: datetime) -> int:
        """Partial files of a rename that died half-way (``.<name>.partial-*``)."""
        removed = 0
        for obj in self.list(prefix):
            name = obj.key.rsplit("/", 1)[-1]
            if name.startswith(".") and ".partial-" in name and obj.modified < older_than:
                (self.root / obj.key).unlink(missing_ok=True)
                removed += 1
        return removed

    def download(self, key: str, local: Path) -> None:
        shutil.copyfile(self._path(key), local)

    def concatenate(self, parts: Sequence[str], key: str, workdir: Path) -> Assembled:
        """The parts' bytes appended into a partial file beside the final one, then renamed."""
        final = self._path(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        partial = final.with_name(f".{final.name}.partial-{uuid.uuid4().hex}")
        digest = hashlib.sha256()
        size = 0
        try:
            with partial.open("wb") as out:
                for part in parts:
                    with self._path(part).open("rb") as src:
                        while block := src.read(1 << 20):
                            digest.update(block)
                            out.write(block)
                            size += len(block)
            os.chmod(partial, 0o600)
            os.replace(partial, final)
        finally:
            partial.unlink(missing_ok=True)
        return Assembled(Stored("local", key, str(final)), size, digest.hexdigest(), "concatenate")

    def remove_prefix(self, prefix: str) -> int:
        base = self._path(prefix)
        if not base.exists():
            return 0
        count = sum(1 for p in base.rglob("*") if p.is_file())
        shutil.rmtree(base, ignore_errors=True)
        return count
