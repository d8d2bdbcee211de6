"""The COPY stream's reader hands Arrow a bounded window of text ahead of the consumer."""

from __future__ import annotations

import io
import threading
from collections.abc import Generator

import pyarrow as pa
import pyarrow.csv as pacsv

from tasks.extract import AHEAD_CHUNKS, _CopyReader

ROW = b"code-0000000001,AMOUNT,12.50\n"  # 29 bytes


def _blocks(rows: int, per_block: int = 1000) -> Generator[bytearray, None, None]:
    for start in range(0, rows, per_block):
        yield bytearray(ROW * min(per_block, rows - start))


def _read_all(reader: _CopyReader, size: int, into: list[int]) -> None:
    buffer = bytearray(size)
    while n := reader.readinto(buffer):
        into.append(n)


def test_arrow_reads_no_further_ahead_than_the_window_until_the_consumer_takes_more() -> None:
    window = 64 << 10
    reader = _CopyReader(_blocks(100_000), window)
    got: list[int] = []
    thread = threading.Thread(target=_read_all, args=(reader, 16 << 10, got), daemon=True)
    thread.start()
    thread.join(0.5)
    assert thread.is_alive()  # waiting for the consumer, not at the end of the stream
    assert sum(got) == window  # what it read: the window, to the byte (whole reads)
    reader.taken(32 << 10)
    thread.join(0.5)
    assert sum(got) == window + (32 << 10)
    reader.taken(len(ROW) * 100_000)  # the consumer takes the rest: the stream runs to its end
    thread.join(5)
    assert not thread.is_alive()
    assert sum(got) == len(ROW) * 100_000


def test_stop_wakes_a_read_that_waits_for_the_consumer() -> None:
    class Raw:  # ``stop`` cancels the server's COPY only when a read is inside the generator
        def cancel_safe(self, timeout: float) -> None:
            raise AssertionError("no read was in flight")

    reader = _CopyReader(_blocks(10_000), 1 << 10)
    got: list[int] = []
    thread = threading.Thread(target=_read_all, args=(reader, 1 << 10, got), daemon=True)
    thread.start()
    thread.join(0.3)
    assert thread.is_alive() and sum(got) == 1 << 10
    reader.stop(Raw())  # type: ignore[arg-type]
    thread.join(5)
    assert not thread.is_alive()  # the waiting read returned nothing: Arrow sees the end
    assert sum(got) == 1 << 10


def test_arrow_parses_every_row_through_the_window() -> None:
    """Arrow's own read-ahead on its I/O thread, the extract's window: all rows, in order (Arrow
    reads the next block before it parses one, for the row that straddles them)."""
    rows, block = 50_000, 64 << 10
    reader = _CopyReader(_blocks(rows, 777), AHEAD_CHUNKS * block)
    csv = pacsv.open_csv(
        io.BufferedReader(reader, buffer_size=16 << 10),
        read_options=pacsv.ReadOptions(
            column_names=["code", "type", "value"], block_size=block, use_threads=False
        ),
        convert_options=pacsv.ConvertOptions(column_types={"value": pa.float64()}),
    )
    seen = 0
    for batch in csv:
        reader.taken(block)
        seen += batch.num_rows
        assert batch.column("type").to_pylist() == ["AMOUNT"] * batch.num_rows
    assert seen == rows
