"""Storage is chosen by the block's type, and an unsupported block is named, never guessed."""

from __future__ import annotations

from pathlib import Path

import pytest
from prefect.filesystems import LocalFileSystem, RemoteFileSystem
from prefect_aws import AwsCredentials, S3Bucket

from storage import Stored
from storage.blocks import UnsupportedStorage, storage_for
from storage.local import LocalStorage
from storage.s3 import S3Storage


def test_blocks_map_to_their_storage_by_type(tmp_path: Path) -> None:
    assert isinstance(storage_for(LocalFileSystem(basepath=str(tmp_path))), LocalStorage)
    bucket = S3Bucket(bucket_name="b", credentials=AwsCredentials(), bucket_folder="f")
    assert isinstance(storage_for(bucket), S3Storage)


def test_an_unsupported_block_type_is_refused_by_name() -> None:
    with pytest.raises(UnsupportedStorage, match="'RemoteFileSystem' is not supported"):
        storage_for(RemoteFileSystem(basepath="gcs://bucket/exports"))


def test_local_put_publishes_atomically_and_delete_verifies(tmp_path: Path) -> None:
    storage = LocalStorage(LocalFileSystem(basepath=str(tmp_path / "root")))
    source = tmp_path / "export.csv"
    source.write_bytes(b"a,b\n1,2\n")
    stored = storage.put(source, "acme/exports/2026/11/voucher-x.csv")
    assert stored.storage == "local" and Path(stored.location).read_bytes() == b"a,b\n1,2\n"
    assert oct(Path(stored.location).stat().st_mode & 0o777) == "0o600"
    again = Stored.from_result({**stored.as_dict(), "url": stored.location})
    assert storage.delete(again) is True and not storage.exists(again)
    assert storage.delete(again) is False


def test_a_key_cannot_escape_the_storage_folder(tmp_path: Path) -> None:
    storage = LocalStorage(LocalFileSystem(basepath=str(tmp_path)))
    source = tmp_path / "x"
    source.write_bytes(b"x")
    with pytest.raises(Exception, match="unsafe storage key"):
        storage.put(source, "../../etc/passwd")
