"""Parallel parts without services: balanced splits, and sinks whose parts concatenate to
the whole file."""

from __future__ import annotations

import io

import pyarrow as pa
import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from core.formats import FORMATS
from core.types import Column
from exporters import WriteOptions, open_sink
from exporters.compress import compressed
from query.split import part_plan, split_positions

COLUMNS = [
    Column("code", "Code", "string", sa.literal_column("code")),
    Column("n", "N", "int", sa.literal_column("n")),
]


def _batch(start: int, stop: int) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays(
        [
            pa.array([f"c{i}" for i in range(start, stop)]),
            pa.array(list(range(start, stop)), pa.int64()),
        ],
        names=["code", "n"],
    )


def _write(
    fmt: str, batches: list[pa.RecordBatch], options: WriteOptions, comp: str | None
) -> bytes:
    out = io.BytesIO()
    stream = compressed(out, comp)  # type: ignore[arg-type]
    sink = open_sink(FORMATS[fmt], stream, COLUMNS, options)
    for batch in batches:
        sink.write(batch)
    sink.close()
    stream.close()
    return out.getvalue()


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "json"])
def test_parts_written_with_opening_and_closing_concatenate_to_the_whole_file(fmt: str) -> None:
    whole = _write(fmt, [_batch(0, 10)], WriteOptions(), None)
    ranges = [(0, 3), (3, 4), (4, 10)]
    pieces = [
        _write(
            fmt,
            [_batch(a, b)],
            WriteOptions(opening=i == 0, closing=i == len(ranges) - 1),
            None,
        )
        for i, (a, b) in enumerate(ranges)
    ]
    assert b"".join(pieces) == whole


def test_split_positions_are_balanced_and_end_every_part_but_the_last() -> None:
    assert split_positions(10, 3) == [3, 6]
    assert split_positions(7, 7) == [1, 2, 3, 4, 5, 6]
    sizes = [
        b - a
        for a, b in zip(
            [0, *split_positions(1001, 4)], [*split_positions(1001, 4), 1001], strict=True
        )
    ]
    assert max(sizes) - min(sizes) <= 1 and sum(sizes) == 1001


def test_a_part_range_casts_boundaries_by_their_postgres_type_and_keeps_nulls_last() -> None:
    from entities import ENTITIES
    from query.plan import plan_export

    plan = plan_export(ENTITIES["voucher"], "demo", {"order": "expiration_date"})
    lower = {"sort": None, "sort_type": "timestamp with time zone", "key": "v1", "key_type": "text"}
    upper = {
        "sort": "2026-01-01 00:00:00+00",
        "sort_type": "timestamp with time zone",
        "key": "v9",
        "key_type": "text",
    }
    narrowed = part_plan(plan, None, upper)
    sql = str(narrowed.where.compile(dialect=postgresql.dialect()))
    assert "AS timestamp with time zone" in sql
    tail = str(part_plan(plan, lower, None).where.compile(dialect=postgresql.dialect()))
    assert "IS NULL" in tail
    with pytest.raises(ValueError, match="unexpected type name"):
        part_plan(plan, {**lower, "key_type": "text); DROP TABLE x; --"}, None)
