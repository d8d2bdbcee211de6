"""``tasks.extract.copy_out``: COPY read straight from libpq, against the real PostgreSQL.

The same bytes as psycopg's own ``Copy``; PostgreSQL's errors as psycopg's classes, mid-stream
too; a consumer that stops early cancels the COPY and leaves the connection usable.
"""

from __future__ import annotations

import time

import psycopg
import pytest
import sqlalchemy as sa

from entities import get_entity
from query.plan import plan_export
from tasks import extract as extract_module
from tasks.extract import Limits, copy_out, open_extract

TRICKY = (
    "COPY (SELECT g, CASE WHEN g % 3 = 0 THEN E'line\\nbreak, \"quoted\"' ELSE 'Zürich ✓' END,"
    " CASE WHEN g % 5 = 0 THEN NULL ELSE repeat('x', g % 300) END"
    " FROM generate_series(1, 60000) g) TO STDOUT (FORMAT csv)"
)


def _copies_still_running(pg: psycopg.Connection, like: str) -> int:
    """Backends other than ``pg``'s still busy with a statement matching ``like``."""
    row = pg.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE query LIKE %s"
        " AND state <> 'idle' AND pid <> pg_backend_pid()",
        (like,),
    ).fetchone()
    assert row is not None
    return int(row[0])


def test_the_bytes_are_exactly_psycopgs_copy(pg: psycopg.Connection) -> None:
    with pg.cursor() as cursor, cursor.copy(TRICKY) as copy:
        expected = b"".join(bytes(block) for block in copy)
    blocks = list(copy_out(pg, TRICKY.encode()))

    assert b"".join(blocks) == expected
    assert len(blocks) < 60000 / 100  # rows travel in blocks, not one by one
    assert all(block.endswith(b"\n") for block in blocks)  # whole rows only
    assert pg.execute("SELECT 1").fetchone() == (1,)


def test_an_error_before_the_first_row_is_psycopgs_error(pg: psycopg.Connection) -> None:
    with pytest.raises(psycopg.errors.UndefinedTable):
        list(copy_out(pg, b"COPY (SELECT * FROM no_such_table) TO STDOUT"))
    pg.rollback()
    assert pg.execute("SELECT 1").fetchone() == (1,)


def test_a_statement_timeout_mid_stream_is_query_canceled(pg: psycopg.Connection) -> None:
    pg.execute("SET statement_timeout = '300ms'")
    got = 0
    with pytest.raises(psycopg.errors.QueryCanceled, match="statement timeout"):
        for block in copy_out(
            pg,
            b"COPY (SELECT g, repeat('x', 200), pg_sleep(0.0005)"
            b" FROM generate_series(1, 100000) g) TO STDOUT",
        ):
            got += block.count(b"\n")
    assert 0 < got < 100000  # rows arrived before the limit hit
    pg.rollback()
    assert pg.execute("SELECT 1").fetchone() == (1,)


def test_a_consumer_that_stops_cancels_the_copy_and_keeps_the_connection(
    pg: psycopg.Connection,
) -> None:
    stream = copy_out(
        pg, b"COPY (SELECT g, pg_sleep(0.0005) FROM generate_series(1, 1000000) g) TO STDOUT"
    )
    next(stream)
    started = time.monotonic()
    stream.close()  # what a failed validation or a cancel does to the generator
    assert time.monotonic() - started < 10  # cancelled, not read to the end (~500 s)
    pg.rollback()
    assert pg.execute("SELECT 1").fetchone() == (1,)
    assert _copies_still_running(pg, "COPY (SELECT g, pg_sleep%") == 0


def test_an_extract_left_after_one_chunk_ends_its_copy_and_transaction(
    engine: sa.Engine, pg: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a failed validation or a cancel does: stop iterating the batches mid-stream.

    The rows come from a 20 MB COPY in place of the seeded table's (too small to be left
    mid-stream once Arrow has read its first megabyte)."""
    big = (
        "COPY (SELECT 'v_' || g, repeat('x', 200) FROM generate_series(1, 100000) g)"
        " TO STDOUT (FORMAT csv)"
    )
    monkeypatch.setattr(extract_module, "copy_sql", lambda dialect, plan, columns: (big, None))
    plan = plan_export(get_entity("voucher"), "demo", {"fields": ["id", "code"]})
    for _ in range(3):  # the pool hands the same connections out again: each must be clean
        with open_extract(engine, plan, 1 << 20, Limits()) as extract:
            for seen, batch in enumerate(extract.batches, 1):
                assert batch.num_rows > 0
                if seen == 3:
                    break
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT 1")).scalar_one() == 1
    assert _copies_still_running(pg, "COPY (SELECT 'v_'%") == 0


def test_a_consumer_that_stops_at_the_last_block_leaves_nothing_in_progress(
    pg: psycopg.Connection,
) -> None:
    """The COPY has ended when its last block is handed on: stopping there must not try to
    cancel or drain a COPY that is no longer in progress."""
    stream = copy_out(pg, b"COPY (SELECT g FROM generate_series(1, 10) g) TO STDOUT")
    assert next(stream).count(b"\n") == 10
    stream.close()
    assert pg.execute("SELECT 1").fetchone() == (1,)
