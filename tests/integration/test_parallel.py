"""Parallel exports (issue 14): parts under one exported snapshot, assembled into one object.

Most tests run the parts in threads of the test process (``EXPORTFLOW_PARTS_LAUNCHER``
``inprocess``: the same part code a worker runs, without a work pool); the real work pool
with two workers is in ``test_parallel_workers.py``. Every comparison is against the
single-process export of the same request, byte for byte.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
import zstandard

from core.settings import get_settings
from db import parts
from db.engine import get_engine
from flows.exports import export_vouchers
from tests.helpers import export, run_failing

pytestmark = pytest.mark.usefixtures("exports")


@pytest.fixture(autouse=True)
def _in_process_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXPORTFLOW_PARTS_LAUNCHER", "inprocess")
    get_settings.cache_clear()


def _bytes(job: dict[str, Any]) -> bytes:
    return Path(job["result"]["location"]).read_bytes()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _pair(**parameters: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The same request exported by one process and in 3 parts."""
    single = export(export_vouchers, tenant="demo", **parameters)
    parallel = export(export_vouchers, tenant="demo", parallelism=3, **parameters)
    return single, parallel


@pytest.mark.parametrize(
    "order", ["created_at", "-created_at", "id", "-value", "expiration_date", "-expiration_date"]
)
def test_parallel_csv_is_byte_identical_to_the_single_process_export(order: str) -> None:
    fields = ["id", "code", "value", "expiration_date", "created_at", "metadata"]
    single, parallel = _pair(fields=fields, order=order)

    data = _bytes(parallel)
    assert data == _bytes(single)
    assert parallel["result"]["sha256"] == _sha(data) == single["result"]["sha256"]
    assert parallel["result"]["bytes"] == len(data)
    assert parallel["result"]["parallel"]["parts"] == 3
    assert sum(parallel["result"]["parallel"]["part_rows"]) == parallel["total"]
    assert parallel["progress"] == parallel["total"] == single["total"]


def test_parallel_gzip_and_zstd_are_one_valid_stream_of_the_same_csv() -> None:
    plain = _bytes(export(export_vouchers, tenant="demo"))
    for compression in ("gzip", "zstd"):
        single, parallel = _pair(compression=compression)
        data = _bytes(parallel)
        assert parallel["result"]["sha256"] == _sha(data)
        if compression == "gzip":
            # three gzip members, one per part: any gzip reader reads them as one stream
            assert gzip.decompress(data) == gzip.decompress(_bytes(single)) == plain
        else:
            # three zstd frames; zstandard's one-shot decompress() stops after the first
            text = (
                zstandard.ZstdDecompressor()
                .stream_reader(io.BytesIO(data), read_across_frames=True)
                .read()
            )
            assert text == plain


def test_parallel_json_jsonl_and_parquet_hold_the_same_rows() -> None:
    for fmt in ("json", "jsonl"):
        single, parallel = _pair(format=fmt, fields=["code", "value", "metadata"])
        assert _bytes(parallel) == _bytes(single)
        if fmt == "json":
            assert len(json.loads(_bytes(parallel))) == single["total"]
    single, parallel = _pair(format="parquet")
    assert pq.read_table(parallel["result"]["location"]).equals(
        pq.read_table(single["result"]["location"])
    )
    assert parallel["result"]["parallel"]["assembly"] == "parquet-rewrite"


def test_a_filtered_export_smaller_than_the_part_count_still_has_every_row_once() -> None:
    window = {"created_at": {"conditions": {"$after": "2025-12-30"}}}
    single = export(export_vouchers, tenant="demo", filters=window, order="-created_at")
    parallel = export(
        export_vouchers, tenant="demo", filters=window, order="-created_at", parallelism=32
    )
    assert 1 < single["total"] < 32
    assert _bytes(parallel) == _bytes(single)
    assert parallel["result"]["parallel"]["parts"] == single["total"]  # one row each


def test_parallelism_one_changes_nothing(engine: sa.Engine) -> None:
    job = export(export_vouchers, tenant="demo", parallelism=1)
    assert "parallel" not in job["result"]
    assert "parallelism" not in job["parameters"]  # the default is not even recorded
    assert parts.list_parts(engine, job["id"]) == []


def test_parallelism_is_refused_for_xlsx_before_reading() -> None:
    job, error = run_failing(export_vouchers, format="xlsx", parallelism=2)
    assert job.status == "ERROR"
    assert "parallelism 2 is not available for xlsx" in str(error)
    assert job.total is None


def test_auto_keeps_a_small_export_in_one_process() -> None:
    job = export(export_vouchers, tenant="demo", parallelism="auto")
    assert "parallel" not in job["result"]
    assert job["parameters"]["parallelism"] == "auto"


def _wait(check: Any, what: str, seconds: float = 120) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"gave up waiting for {what}")


def _running_export(**parameters: Any) -> tuple[threading.Thread, dict[str, Any]]:
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["job"] = export(export_vouchers, tenant="demo", **parameters)
        except Exception as exc:
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, box


def _part_streaming(pg: psycopg.Connection, part: int, attempt: int = 1) -> Any:
    return pg.execute(
        "SELECT job_id, backend_pid FROM export_parts WHERE part = %s AND attempt = %s"
        " AND status = 'RUNNING' AND progress > 0 AND backend_pid IS NOT NULL"
        " ORDER BY created_at DESC LIMIT 1",
        (part, attempt),
    ).fetchone()


@pytest.fixture
def slow_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Small chunks and a pause after each, so a part is still streaming when we strike."""
    monkeypatch.setenv("EXPORTFLOW_CHUNK_BYTES", "4096")
    monkeypatch.setenv("EXPORTFLOW_PART_CHUNK_PAUSE_S", "0.2")
    get_settings.cache_clear()


@pytest.mark.usefixtures("slow_parts")
def test_rows_committed_during_a_parallel_export_are_absent(pg: psycopg.Connection) -> None:
    expected = _bytes(export(export_vouchers, tenant="demo", order="-created_at"))
    pg.execute("DELETE FROM export_parts")
    thread, box = _running_export(order="-created_at", parallelism=2)
    _wait(lambda: _part_streaming(pg, 1), "part 1 to stream")
    # newest rows of the tenant, committed while the parts stream: they would sort first
    pg.execute(
        "INSERT INTO vouchers SELECT (jsonb_populate_record(v, jsonb_build_object("
        "'id', 'late_' || v.id, 'code', 'LATE-' || v.code, 'created_at', now()))).*"
        " FROM vouchers v WHERE tenant_id = 'demo' LIMIT 50"
    )
    try:
        thread.join(300)
        assert "error" not in box, box.get("error")
        assert _bytes(box["job"]) == expected
        assert b"LATE-" not in _bytes(box["job"])
    finally:
        pg.execute("DELETE FROM vouchers WHERE id LIKE 'late\\_%'")


@pytest.mark.usefixtures("slow_parts")
def test_a_part_killed_mid_stream_is_retried_alone_and_the_file_is_identical(
    pg: psycopg.Connection,
) -> None:
    expected = _bytes(export(export_vouchers, tenant="demo", fields=["code", "created_at"]))
    pg.execute("DELETE FROM export_parts")
    thread, box = _running_export(fields=["code", "created_at"], parallelism=3)
    job_id, backend = _wait(lambda: _part_streaming(pg, 1), "part 1 to stream")
    (killed,) = pg.execute("SELECT pg_terminate_backend(%s)", (backend,)).fetchone()
    assert killed
    thread.join(300)
    assert "error" not in box, box.get("error")
    job = box["job"]
    assert job["status"] == "DONE"
    assert _bytes(job) == expected
    assert job["result"]["parallel"]["part_attempts"] == [1, 2, 1]
    storage = Path(job["result"]["location"]).parents[4]
    assert not list(storage.glob(f"demo/tmp/parts/{job_id}/*"))  # temp parts removed


def test_a_part_that_fails_every_attempt_fails_the_export_with_no_object(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EXPORTFLOW_PART_ATTEMPTS", "2")
    get_settings.cache_clear()
    # the parts cannot store their files: a plain file sits where their temp folder goes
    blocker = get_settings().local_storage_path / "demo" / "tmp"
    shutil.rmtree(blocker, ignore_errors=True)  # empty folders left by earlier exports
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("not a folder")
    try:
        job, _ = run_failing(export_vouchers, parallelism=2)
    finally:
        blocker.unlink()
    assert job.status == "ERROR"
    assert job.result is None
    assert "failed 2 times" in (job.error or ""), job.error
    assert not list(get_settings().local_storage_path.rglob(f"*{job.id}*"))
    rows = parts.list_parts(get_engine(), job.id)
    assert [p.status for p in rows] == ["FAILED", "FAILED"]


def test_parallel_export_to_s3_is_the_single_process_object(s3: tuple[str, Any]) -> None:
    bucket, client = s3
    single, parallel = _pair(compression="gzip")

    def body(job: dict[str, Any]) -> bytes:
        data: bytes = client.get_object(Bucket=bucket, Key=job["result"]["key"])["Body"].read()
        return data

    data = body(parallel)
    assert gzip.decompress(data) == gzip.decompress(body(single))
    assert parallel["result"]["sha256"] == _sha(data)
    # parts of a few kB are under S3's 5 MiB part minimum: joined here, uploaded once
    assert parallel["result"]["parallel"]["assembly"] == "download"
    left = client.list_objects_v2(Bucket=bucket, Prefix="demo/tmp/").get("KeyCount", 0)
    assert left == 0
    assert not client.list_multipart_uploads(Bucket=bucket).get("Uploads")


def test_s3_assembly_copies_parts_of_5_mib_server_side(s3: tuple[str, Any], tmp_path: Path) -> None:
    from storage.blocks import storage_from_settings

    bucket, client = s3
    pieces = [bytes([65 + i]) * ((5 << 20) + i * 1000) for i in range(2)] + [b"tail\n"]
    keys = []
    for i, piece in enumerate(pieces):
        keys.append(f"demo/tmp/parts/x/part-{i:05d}-a1.csv")
        client.put_object(Bucket=bucket, Key=keys[-1], Body=piece)
    storage = storage_from_settings(get_settings())

    assembled = storage.concatenate(keys, "demo/exports/2026/01/voucher-x.csv", tmp_path)

    whole = b"".join(pieces)
    got = client.get_object(Bucket=bucket, Key=assembled.stored.key)["Body"].read()
    assert got == whole
    assert (assembled.method, assembled.bytes, assembled.sha256) == (
        "part-copy",
        len(whole),
        _sha(whole),
    )
    assert storage.remove_prefix("demo/tmp/parts/x") == 3
    assert client.list_objects_v2(Bucket=bucket, Prefix="demo/tmp/").get("KeyCount", 0) == 0
