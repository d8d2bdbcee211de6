"""``tasks.extract.copy_out``: COPY read straight from libpq, against the real PostgreSQL.

The same bytes as psycopg's own ``Copy``; PostgreSQL's errors as psycopg's classes, mid-stream
too; a consumer that stops early cancels the COPY and leaves the connection usable.
"""

from __future__ import annotations

import time

import psycopg
import pytest

from tasks.extract import copy_out

TRICKY = (
    "COPY (SELECT g, CASE WHEN g % 3 = 0 THEN E'line\\nbreak, \"quoted\"' ELSE 'Zürich ✓' END,"
    " CASE WHEN g % 5 = 0 THEN NULL ELSE repeat('x', g % 300) END"
    " FROM generate_series(1, 60000) g) TO STDOUT (FORMAT csv)"
)


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
            b"COPY (SELECT g, pg_sleep(0.001) FROM generate_series(1, 100000) g) TO STDOUT",
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
    active = pg.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'COPY (SELECT g, pg_sleep%'"
        " AND state = 'active' AND pid <> pg_backend_pid()"
    ).fetchone()
    assert active == (0,)
