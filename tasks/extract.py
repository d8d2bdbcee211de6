"""Extract: stream an export's rows out of PostgreSQL as typed Arrow record batches.

Everything an export reads -- the preliminary count, the metadata keys, the rows -- runs in one
``REPEATABLE READ READ ONLY`` transaction, so all three see the same snapshot. Rows come out
through ``COPY (SELECT ...) TO STDOUT`` (the fastest path PostgreSQL offers: no per-row Python
objects, no OFFSET, no server-side cursor round trips) and are parsed chunk by chunk by
Arrow's C++ CSV reader into batches typed from the entity declaration.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import select
import threading
import time
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
import psycopg.errors
import pyarrow as pa
import pyarrow.csv as pacsv
import sqlalchemy as sa
from psycopg import pq

from core.errors import InvalidRequest, TimedOut
from core.settings import Settings
from core.types import Column, FieldType
from db.jobs import Job
from exporters.base import TEMPORAL, arrow_type, pg_temporal
from query.fields import metadata_type
from query.plan import ExportPlan
from query.sql import copy_sql, count_statement, metadata_keys_statement, metadata_types_statement

_log = logging.getLogger(__name__)


@dataclass
class Extract:
    """An open snapshot: its row count, the output columns, and the batches to stream."""

    total: int | None
    """The preliminary count (``None`` for a part: the coordinator counted)."""
    metadata_keys: list[str]
    columns: list[Column]
    batches: Iterator[pa.RecordBatch]
    backend_pid: int | None = None
    """The PostgreSQL backend streaming a part (``None`` for a whole export)."""


@dataclass(frozen=True)
class PartRead:
    """How a part of a parallel export reads: in the coordinator's exported snapshot, with
    the coordinator's metadata keys and types (so every part has the same columns)."""

    snapshot: str
    metadata_keys: list[str]
    metadata_types: dict[str, FieldType] = field(default_factory=dict)


_SNAPSHOT_ID = re.compile(r"^[0-9A-Fa-f]+-[0-9A-Fa-f]+-[0-9]+$")


def import_snapshot(conn: sa.Connection, snapshot: str) -> None:
    """``SET TRANSACTION SNAPSHOT`` -- must be the transaction's first statement."""
    if not _SNAPSHOT_ID.match(snapshot):
        raise ValueError(f"not a snapshot id: {snapshot!r}")
    conn.execute(sa.text(f"SET TRANSACTION SNAPSHOT '{snapshot}'"))


@dataclass(frozen=True)
class Limits:
    """The time limits of one export's reads, and the name the session shows in
    ``pg_stat_activity`` (``application_name``)."""

    statement_timeout_s: float = 0
    """0 = none; the COPY is one statement, so this bounds the whole stream."""
    lock_timeout_s: float = 0
    application_name: str = ""
    statement_limit: str = "statement_timeout (EXPORTFLOW_STATEMENT_TIMEOUT_S)"
    """What the statement timeout stands for, named when it is hit."""


def attempt_limits(job: Job, settings: Settings, left_s: float) -> Limits:
    """The read limits of ``job``'s current attempt with ``left_s`` of its run timeout left:
    the statement timeout (never past the run timeout), the lock timeout, and the session's
    name in ``pg_stat_activity``."""
    limited_by_run = left_s < settings.statement_timeout_s
    return Limits(
        statement_timeout_s=min(settings.statement_timeout_s, left_s),
        lock_timeout_s=settings.lock_timeout_s,
        application_name=f"exportflow {job.id} attempt {job.attempt}",
        statement_limit=(
            f"the run timeout of {settings.run_timeout_s} s (EXPORTFLOW_RUN_TIMEOUT_S)"
            if limited_by_run
            else "statement_timeout (EXPORTFLOW_STATEMENT_TIMEOUT_S)"
        ),
    )


def timeout_error(exc: BaseException, limits: Limits) -> TimedOut | None:
    """A ``TimedOut`` naming the limit when ``exc`` is PostgreSQL enforcing one."""
    orig = exc.orig if isinstance(exc, sa.exc.DBAPIError) else exc
    if isinstance(orig, psycopg.errors.LockNotAvailable):
        return TimedOut(
            f"waited more than the lock_timeout of {limits.lock_timeout_s:g} s"
            " (EXPORTFLOW_LOCK_TIMEOUT_S) for a lock another transaction holds on the data;"
            " try again later",
            key="lock_timeout",
        )
    if isinstance(orig, psycopg.errors.QueryCanceled) and "statement timeout" in str(orig):
        return TimedOut(
            f"the export's query ran longer than its limit of {limits.statement_timeout_s:g} s:"
            f" {limits.statement_limit}; narrow the filters or raise the limit",
            key="statement_timeout",
        )
    return None


@contextmanager
def open_extract(
    engine: sa.Engine,
    plan: ExportPlan,
    chunk_bytes: int,
    limits: Limits | None = None,
    part: PartRead | None = None,
    opened: Opened | None = None,
) -> Iterator[Extract]:
    """Open the snapshot; the caller iterates ``batches`` inside the ``with`` block.

    A time limit PostgreSQL enforces (``limits``) surfaces as ``TimedOut``; the session is
    returned (or, after a lost connection, discarded) when the block ends. With ``part``, the
    transaction imports the coordinator's snapshot (``SET TRANSACTION SNAPSHOT '<id>'``) and
    neither counts nor looks up metadata keys again. ``opened`` (which must ``fit`` the plan)
    is a snapshot ``open_ahead`` opened for it: its rows are streamed instead.
    """
    limits = limits or Limits()
    try:
        with _open_extract(engine, plan, chunk_bytes, limits, part, opened) as extract:
            yield extract
    except Exception as exc:
        timed_out = timeout_error(exc, limits)
        if timed_out is not None:
            raise timed_out from exc
        raise


@contextmanager
def _open_extract(
    engine: sa.Engine,
    plan: ExportPlan,
    chunk_bytes: int,
    limits: Limits,
    part: PartRead | None,
    opened: Opened | None = None,
) -> Iterator[Extract]:
    if opened is not None:  # opened ahead of the run, in the snapshot taken then
        with opened.stack:
            batches = _copy_batches(opened.conn, plan, opened.columns, chunk_bytes, opened.query)
            try:
                yield Extract(opened.total, opened.keys, opened.columns, batches)
            finally:
                batches.close()
        return
    with contextlib.ExitStack() as stack:
        conn = _begin(stack, engine, limits, part)
        total: int | None = None
        backend_pid: int | None = None
        if part is not None:
            keys, types = list(part.metadata_keys), dict(part.metadata_types)
            backend_pid = int(conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one())
        else:
            total, keys, types = _count_and_metadata(conn, plan)
        columns = _columns(plan, keys, types)
        batches = _copy_batches(conn, plan, columns, chunk_bytes)
        try:
            yield Extract(total, keys, columns, batches, backend_pid)
        finally:
            batches.close()


def _begin(
    stack: contextlib.ExitStack, engine: sa.Engine, limits: Limits, part: PartRead | None
) -> sa.Connection:
    """A connection in its ``REPEATABLE READ READ ONLY`` transaction (in ``part``'s snapshot),
    with the session settings of ``limits``; both end with ``stack``."""
    conn = stack.enter_context(engine.connect())
    conn = conn.execution_options(isolation_level="REPEATABLE READ")
    stack.enter_context(conn.begin())
    if part is not None:
        import_snapshot(conn, part.snapshot)
    conn.execute(sa.text("SET TRANSACTION READ ONLY"))
    _session_settings(conn, limits)
    return conn


def _columns(plan: ExportPlan, keys: list[str], types: dict[str, FieldType]) -> list[Column]:
    columns = plan.columns(keys, types)
    if not columns:
        raise InvalidRequest(
            "the selected fields give no columns: no row of this export has metadata;"
            " select metadata.<key> or other fields",
            key="no_columns",
        )
    return columns


@dataclass
class Opened:
    """A whole export's snapshot opened ahead of its run (``tasks.headstart``): its count,
    metadata keys and columns read, and its ``COPY`` sent, so PostgreSQL scans and sorts while
    Prefect is still starting the run. ``fits`` tells whether it is exactly what
    ``open_extract`` would open for a plan; ``close`` cancels it and ends its transaction."""

    stack: contextlib.ExitStack
    conn: sa.Connection
    limits: Limits
    sent_at: float
    """``time.monotonic()`` when the COPY was sent (its statement timeout runs from then)."""
    began_at: float
    """``time.monotonic()`` when opening began (the snapshot, the count, the metadata keys)."""
    reads: list[tuple[str, dict[str, Any]]]
    total: int
    keys: list[str]
    types: dict[str, FieldType]
    columns: list[Column]
    query: bytes

    def fits(self, engine: sa.Engine, plan: ExportPlan, limits: Limits) -> bool:
        """Whether ``plan`` under ``limits`` runs these very statements in this session: the
        same database, the same count and metadata reads, the same COPY text, the same lock
        timeout and session name, and a statement deadline no later than ``limits`` asks --
        on a session that is still there (not terminated while it waited)."""
        if self.conn.engine.url != engine.url or not self._alive(engine):
            return False
        if (self.limits.lock_timeout_s, self.limits.application_name) != (
            limits.lock_timeout_s,
            limits.application_name,
        ):
            return False
        if self.limits.statement_timeout_s <= 0 < limits.statement_timeout_s or (
            limits.statement_timeout_s > 0
            and self.sent_at + self.limits.statement_timeout_s
            > time.monotonic() + limits.statement_timeout_s + 1.0
        ):
            return False
        if _reads(engine.dialect, plan) != self.reads:
            return False
        columns = plan.columns(self.keys, self.types)
        if [_shape(c) for c in columns] != [_shape(c) for c in self.columns]:
            return False
        return _copy_query(self.conn, plan, columns) == self.query  # the same SQL per column

    def _alive(self, engine: sa.Engine) -> bool:
        """Whether the session survived (not terminated, its connection not dropped): libpq
        has not seen it end, and its backend is still listed (asked on another connection;
        what it sent so far may be rows, not yet the end)."""
        raw = self.conn.connection.driver_connection
        if raw is None:
            return False
        try:
            raw.pgconn.consume_input()
        except psycopg.OperationalError:
            return False
        if raw.pgconn.status != pq.ConnStatus.OK:
            return False
        with engine.connect() as other:
            listed = other.execute(
                sa.text("SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = :pid)"),
                {"pid": raw.info.backend_pid},
            ).scalar_one()
        return bool(listed)

    def close(self) -> None:
        """Cancel the COPY (the server may still be sorting) and roll the transaction back;
        never raises (a session that is gone is discarded by the pool)."""
        raw = self.conn.connection.driver_connection
        if raw is not None:
            poll = select.poll()
            with contextlib.suppress(Exception):  # the connection may be gone
                poll.register(raw.pgconn.socket, select.POLLIN)
            _abandon(raw, poll)
        abandoned = _Abandoned()
        try:
            self.stack.__exit__(_Abandoned, abandoned, None)  # the transaction rolls back
        except Exception as exc:
            _log.debug("closing a snapshot opened ahead: %s", exc)


class _Abandoned(Exception):
    """Ends an ``Opened`` transaction that was not streamed (a rollback, not a commit)."""


def _shape(column: Column) -> tuple[object, ...]:
    """What a column is in the file (its SQL is compared as text, in the COPY)."""
    return (column.name, column.label, column.type, column.precision, column.scale)


def open_ahead(
    engine: sa.Engine, plan: ExportPlan, limits: Limits, parallel_workers: int | None = None
) -> Opened:
    """Open ``plan``'s snapshot, read its count and metadata keys and send its COPY, without
    reading a row (``Opened``), with at most ``parallel_workers`` parallel workers per query
    (``None``: the server's setting). Any failure closes what was opened and raises."""
    began_at = time.monotonic()
    stack = contextlib.ExitStack()
    try:
        conn = _begin(stack, engine, limits, None)
        if parallel_workers is not None:  # never more than the server's own setting
            conn.execute(
                sa.text(
                    "SELECT set_config('max_parallel_workers_per_gather',"
                    " least(current_setting('max_parallel_workers_per_gather')::int, :n)::text,"
                    " true)"
                ),
                {"n": parallel_workers},
            )
        total, keys, types = _count_and_metadata(conn, plan)
        columns = _columns(plan, keys, types)
        query = _copy_query(conn, plan, columns)
        raw = conn.connection.driver_connection
        assert raw is not None
        raw.pgconn.send_query(query)
        _flush(raw.pgconn)
        opened = Opened(
            stack=stack,
            conn=conn,
            limits=limits,
            sent_at=time.monotonic(),
            began_at=began_at,
            reads=_reads(engine.dialect, plan),
            total=total,
            keys=keys,
            types=types,
            columns=columns,
            query=query,
        )
    except BaseException:
        stack.close()
        raise
    return opened


def _reads(dialect: sa.Dialect, plan: ExportPlan) -> list[tuple[str, dict[str, Any]]]:
    """The count and metadata statements ``plan`` runs before its COPY, compiled."""
    statements = [count_statement(plan)]
    metadata = _metadata_statement(plan)
    if metadata is not None:
        statements.append(metadata)
    out = []
    for statement in statements:
        compiled = statement.compile(dialect=dialect, compile_kwargs={"render_postcompile": True})
        out.append((str(compiled), dict(compiled.params)))
    return out


def _session_settings(conn: sa.Connection, limits: Limits) -> None:
    """UTC, ISO dates, exact floats, the time limits and the session's name, for this
    transaction only."""
    # The text COPY writes must not depend on the server's defaults: UTC, ISO dates (a server
    # set to ``SQL, DMY`` would write 31/01/2026) and floats in their shortest exact form (0
    # or less drops digits).
    conn.execute(
        sa.text(
            "SELECT set_config('TimeZone', 'UTC', true), set_config('DateStyle', 'ISO, YMD', true),"
            " set_config('extra_float_digits', '1', true)"
        )
    )
    for name, value in (
        ("statement_timeout", int(limits.statement_timeout_s * 1000)),
        ("lock_timeout", int(limits.lock_timeout_s * 1000)),
    ):
        if value > 0:
            conn.execute(sa.text(f"SET LOCAL {name} = {max(1, value)}"))
    if limits.application_name:
        conn.execute(
            sa.text("SELECT set_config('application_name', :name, true)"),
            {"name": limits.application_name[:63]},
        )


@dataclass
class Snapshot:
    """A parallel export's coordinator transaction: the exported snapshot every part imports."""

    id: str
    total: int
    metadata_keys: list[str]
    metadata_types: dict[str, FieldType]
    conn: sa.Connection


@contextmanager
def export_snapshot(
    engine: sa.Engine, plan: ExportPlan, limits: Limits | None = None
) -> Iterator[Snapshot]:
    """``BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SELECT pg_export_snapshot()``, the
    count and the metadata keys; the snapshot stays importable until the block ends."""
    limits = limits or Limits()
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            conn.execute(sa.text("SET TRANSACTION READ ONLY"))
            snapshot_id = str(conn.execute(sa.text("SELECT pg_export_snapshot()")).scalar_one())
            _session_settings(conn, limits)
            # the coordinator sits idle in this transaction while the parts stream
            conn.execute(sa.text("SET LOCAL idle_in_transaction_session_timeout = 0"))
            total, keys, types = _count_and_metadata(conn, plan)
            yield Snapshot(snapshot_id, total, keys, types, conn)


def _metadata_statement(plan: ExportPlan) -> sa.Select[Any] | None:
    """The statement that finds ``plan``'s metadata keys (with their types, for formats that
    hold types: ``FormatSpec.typed_metadata``), if it needs one."""
    if plan.typed_metadata and (plan.expands_metadata or plan.metadata_keys()):
        wanted = None if plan.expands_metadata else plan.metadata_keys()
        return metadata_types_statement(plan, wanted)
    if plan.expands_metadata:
        return metadata_keys_statement(plan)
    return None


def _count_and_metadata(
    conn: sa.Connection, plan: ExportPlan
) -> tuple[int, list[str], dict[str, FieldType]]:
    """What every whole export reads in its snapshot before its rows: the count (the job's
    ``total``), then the metadata keys and types (``_metadata``)."""
    total = int(conn.execute(count_statement(plan)).scalar_one())
    return (total, *_metadata(conn, plan))


def _metadata(conn: sa.Connection, plan: ExportPlan) -> tuple[list[str], dict[str, FieldType]]:
    """The metadata keys ``metadata`` expands to, and the type of each metadata column.

    Formats that hold types (``FormatSpec.typed_metadata``) get each key typed from the JSON
    types its values have in this snapshot; the others keep metadata as text.
    """
    statement = _metadata_statement(plan)
    if statement is None:
        return [], {}
    if plan.typed_metadata:
        types = {
            key: metadata_type(kinds, bool(integral))
            for key, kinds, integral in conn.execute(statement)
        }
        return (sorted(types) if plan.expands_metadata else []), types
    return [r[0] for r in conn.execute(statement)], {}


class _CopyReader(io.RawIOBase):
    """A file-like view of the COPY stream for Arrow's CSV reader.

    Arrow reads ahead on an I/O thread of its own, so ``readinto`` runs there, under a lock
    that ``stop`` takes to end the stream from the consumer's thread without pulling the
    generator from under a read in flight. The part of a block that does not fit is kept for
    the next call.

    Arrow's read-ahead queue holds up to 32 blocks and cannot be told otherwise; when the
    consumer (writer and validation) is slower than the server, it filled with the COPY's
    text: +20-25 MB in the middle of a 1M-row export, none in a 100k-row one. So this reader
    hands Arrow at most ``window`` bytes more than the consumer has taken (``taken``), and the
    server waits on its socket instead, as it does for any slow client.
    """

    def __init__(self, blocks: Generator[bytearray, None, None], window: int) -> None:
        self._blocks = blocks
        self._pending: Any = b""
        self._lock = threading.Lock()
        self._stopped = False
        self._credit = threading.Condition()
        self._handed = 0
        self._allowed = window

    def readable(self) -> bool:
        return True

    def has_rows(self) -> bool:
        """Wait for the first block; ``False`` if the COPY has no rows at all."""
        with self._lock:
            if not self._pending:
                self._pending = next(self._blocks, b"")
            return bool(self._pending)

    def taken(self, nbytes: int) -> None:
        """The consumer took a chunk of ``nbytes`` of text: Arrow may read that much more."""
        with self._credit:
            self._allowed += nbytes
            self._credit.notify_all()

    def readinto(self, buffer: Any) -> int:
        with self._credit:  # outside the lock: ``stop`` must be able to take it meanwhile
            while self._handed >= self._allowed and not self._stopped:
                self._credit.wait()
        with self._lock:
            filled = self._fill(buffer)
        with self._credit:
            self._handed += filled
        return filled

    def _fill(self, buffer: Any) -> int:
        if self._stopped:
            return 0
        view = memoryview(buffer).cast("B")
        want = len(view)
        pending = self._pending
        filled = min(len(pending), want)
        if filled:
            view[:filled] = pending[:filled]
            self._pending = pending[filled:]
            if filled == want:
                return want
        for block in self._blocks:
            end = filled + len(block)
            if end >= want:
                take = want - filled
                view[filled:] = block[:take]
                self._pending = block[take:]
                return want
            view[filled:end] = block
            filled = end
        return filled

    def stop(self, raw: psycopg.Connection[Any]) -> None:
        """End the stream now (the consumer stopped early: failed validation, cancel, crash).

        A read in flight on Arrow's thread is first cut short by cancelling the COPY on the
        server; then the generator is closed, which reads the cancelled COPY to its end, so the
        connection is idle (in its failed transaction) when the caller rolls back. A read
        waiting for the consumer returns nothing.
        """
        with self._credit:
            self._stopped = True
            self._credit.notify_all()
        if not self._lock.acquire(blocking=False):
            with contextlib.suppress(Exception):  # the connection may be gone
                raw.cancel_safe(timeout=5.0)
            self._lock.acquire()
        try:
            self._blocks.close()
        finally:
            self._lock.release()


def _copy_query(conn: sa.Connection, plan: ExportPlan, columns: list[Column]) -> bytes:
    """The ``COPY`` statement of ``plan`` as bytes, its parameters bound client-side (COPY
    takes no bind parameters: psycopg's own ``cursor.copy`` binds them so too)."""
    raw = conn.connection.driver_connection
    assert raw is not None
    sql, params = copy_sql(conn.dialect, plan, columns)
    return psycopg.ClientCursor(raw).mogrify(sql, params).encode(raw.info.encoding)


def _copy_batches(
    conn: sa.Connection,
    plan: ExportPlan,
    columns: list[Column],
    chunk_bytes: int,
    sent: bytes | None = None,
) -> Generator[pa.RecordBatch, None, None]:
    """The rows of ``plan``'s COPY as batches (``sent``: that COPY was already sent)."""
    names = [c.name for c in columns]
    raw = conn.connection.driver_connection
    assert raw is not None
    query = sent if sent is not None else _copy_query(conn, plan, columns)
    source = _CopyReader(copy_out(raw, query, sent=sent is not None), AHEAD_CHUNKS * chunk_bytes)
    parsed = _parse(source, columns, names, chunk_bytes)
    try:
        for batch in parsed:  # noqa: UP028  (``yield from`` would close ``parsed`` first on a stop)
            yield batch
        _log.debug("COPY stream finished")  # the benchmark's "last row" mark
    finally:
        # Also when stopped early: the COPY ends here and now (cancelled first if Arrow's
        # read-ahead is inside it, which freeing Arrow's reader would otherwise wait for).
        # Left to the garbage collector, the read-ahead could still be mid-COPY when the
        # transaction is rolled back.
        source.stop(raw)
        parsed.close()


AHEAD_CHUNKS = 3
"""Chunks of COPY text Arrow may read ahead of the chunk the consumer is at (``_CopyReader``);
at least 2: Arrow reads the next block before it parses one (for the row straddling them)."""

COPY_BLOCK_BYTES = 1 << 20
"""Rows are handed on in blocks of up to this many bytes ..."""
COPY_EARLY_BYTES = 64 << 10
"""... or of at least this many when the server is slower than the reader (and the first
rows at once, whatever their size)."""


def copy_out(
    raw: psycopg.Connection[Any], query: bytes, *, sent: bool = False
) -> Generator[bytearray, None, None]:
    """Run ``COPY ... TO STDOUT`` and yield its data in blocks of whole rows, read straight from
    libpq (``psycopg.pq``).

    PostgreSQL sends one message per row. psycopg's ``Copy`` spends ~1 us of Python per row
    (a generator and a wait per message), held under the GIL that the validation thread also
    needs; here a row costs one ``get_copy_data`` call and a ``bytearray`` append, and the
    thread waits for the socket without the GIL only when libpq has no complete row. Errors
    are psycopg's own exception classes (a statement timeout is ``QueryCanceled``, a lost
    connection ``OperationalError``). When the consumer stops early (failed validation, a
    cancel, a crash), the server is told to cancel instead of the rest being drained, and the
    connection is left idle (in its transaction) for the caller to roll back. ``sent``: the
    query was already sent on ``raw`` (``open_ahead``).
    """
    pg = raw.pgconn
    poll = select.poll()
    poll.register(pg.socket, select.POLLIN)
    if not sent:
        pg.send_query(query)
    finished = False
    try:
        _flush(pg)
        started = _next_result(pg, poll)
        if started is None or started.status != pq.ExecStatus.COPY_OUT:
            finished = True  # the statement is over: nothing to cancel
            _drain_results(pg, poll)
            raise _error(raw, started)
        first = True
        block = bytearray()
        while True:
            size, data = pg.get_copy_data(1)
            if size > 0:
                block += data
                if len(block) >= COPY_BLOCK_BYTES:
                    yield block
                    block = bytearray()
            elif size == 0:  # no complete row buffered: wait for the socket
                if len(block) >= COPY_EARLY_BYTES or (block and first):
                    first = False
                    yield block
                    block = bytearray()
                poll.poll()
                pg.consume_input()
            else:  # -1: the COPY ended (done, or an error the final result carries)
                break
        # The statement's outcome is read before the last block is handed on: a consumer that
        # stops there leaves a connection with nothing in progress.
        outcome = _next_result(pg, poll)
        _drain_results(pg, poll)
        finished = True
        if outcome is None or outcome.status != pq.ExecStatus.COMMAND_OK:
            raise _error(raw, outcome)
        if block:
            yield block
    finally:
        if not finished:
            _abandon(raw, poll)


def _flush(pg: pq.abc.PGconn) -> None:
    out = select.poll()
    out.register(pg.socket, select.POLLOUT)
    while pg.flush() != 0:
        out.poll()


def _next_result(pg: pq.abc.PGconn, poll: select.poll) -> pq.abc.PGresult | None:
    while True:
        pg.consume_input()
        if not pg.is_busy():
            return pg.get_result()
        poll.poll()


def _drain_results(pg: pq.abc.PGconn, poll: select.poll) -> None:
    """Read every result left, skipping the data of a COPY that started meanwhile."""
    while (result := _next_result(pg, poll)) is not None:
        if result.status == pq.ExecStatus.COPY_OUT:
            _skip_copy_data(pg, poll)


def _skip_copy_data(pg: pq.abc.PGconn, poll: select.poll, quiet_s: float = 30.0) -> None:
    """Read a COPY's data to its end (``OperationalError`` when no COPY is in progress)."""
    while True:
        size, _ = pg.get_copy_data(1)
        if size < 0:
            return
        if size == 0:
            if not poll.poll(quiet_s * 1000):
                raise TimeoutError(f"the server sent nothing for {quiet_s:g} s")
            pg.consume_input()


def _error(raw: psycopg.Connection[Any], result: pq.abc.PGresult | None) -> psycopg.Error:
    if result is None or result.status == pq.ExecStatus.COMMAND_OK:
        return psycopg.ProgrammingError("COPY ... TO STDOUT did not start a COPY")
    return psycopg.errors.error_from_result(result, encoding=raw.info.encoding)


def _abandon(raw: psycopg.Connection[Any], poll: select.poll) -> None:
    """The consumer stopped mid-statement: cancel it server-side and read up to its end (the
    ``QueryCanceled`` that ends it is expected), so the connection can be rolled back. A
    connection this cannot bring back is discarded by the pool's ping."""
    with contextlib.suppress(Exception):  # the connection may be gone
        raw.cancel_safe(timeout=5.0)
    pg = raw.pgconn
    with contextlib.suppress(Exception):
        with contextlib.suppress(psycopg.OperationalError):  # not in the COPY yet
            _skip_copy_data(pg, poll)
        _drain_results(pg, poll)


def _parse(
    source: _CopyReader, columns: list[Column], names: list[str], chunk_bytes: int
) -> Generator[pa.RecordBatch, None, None]:
    if not source.has_rows():  # no rows: Arrow refuses an empty CSV stream
        return
    _log.debug("first COPY data received")  # the benchmark's "first row read" mark
    # Without Arrow's CPU pool: with validation on its own thread and the COPY loop cheap, its
    # parsing threads were no faster at 1M rows and held ~10-25 MB more.
    reader = pacsv.open_csv(
        io.BufferedReader(source, buffer_size=1 << 20),
        read_options=pacsv.ReadOptions(
            column_names=[f"c{i}" for i in range(len(columns))],
            block_size=chunk_bytes,
            use_threads=False,
        ),
        parse_options=pacsv.ParseOptions(newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(
            column_types={f"c{i}": _read_as(c) for i, c in enumerate(columns)},
            null_values=[""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
            true_values=["t"],
            false_values=["f"],
        ),
    )
    temporal = [i for i, c in enumerate(columns) if c.type in TEMPORAL]
    for batch in reader:
        source.taken(chunk_bytes)  # a chunk is ~one block of text: Arrow may read one more
        arrays = batch.columns
        for i in temporal:
            arrays[i] = pg_temporal(arrays[i], columns[i])
        yield pa.RecordBatch.from_arrays(arrays, names=names)


def _read_as(column: Column) -> pa.DataType:
    """Timestamps and dates are read as text first: Arrow's CSV parser fails a whole stream on
    one value it cannot read (``infinity``, a BC or five-digit year), its cast of a chunk only
    that chunk, which ``exporters.base.pg_temporal`` then reads value by value (+~0.05 s per
    1M values of a timestamp column)."""
    return pa.string() if column.type in TEMPORAL else arrow_type(column)
