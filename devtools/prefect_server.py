"""``python -m devtools.prefect_server``: ``prefect server start`` for ``make serve``, with one
difference -- a retryable failure tells the client to ask again soon.

On SQLite, Prefect's server opens its transactions DEFERRED: one that reads and then writes
(taking an export slot, ``increment-with-lease``, reads the limits and then updates them) fails
at once with ``database is locked`` when any other write committed in between, which under a
few runs' states, events and logs is often. The server answers 503 without a ``Retry-After``,
and Prefect's client then backs off exponentially: 2 s, 4 s, 8 s. Nothing was wrong that a
retry a moment later would not fix, yet one unlucky run sat 14 s at its slot while it held a
worker slot (a burst of twenty 10-row exports: 51.6 s, against 25.3 s with the header).

So every 503 the app sends without a ``Retry-After`` gets one of 0.25-1 s, drawn at random so
that a burst's colliding writers do not all come back at the same moment. Prefect's client
honours the header (adding up to 20% jitter) and gives up after ``PREFECT_CLIENT_MAX_RETRIES``
attempts: 30 in the processes ``make serve`` starts (``devtools.serve``; with Prefect's 5
quick tries a burst of twenty POSTs had a create_flow_run give up), and the API keeps asking
for up to 30 s more before it fails an export (``api.launcher.DeploymentLauncher``).

And it waits 1 s, not 60 s, for SQLite's write lock (``PRAGMA busy_timeout``). Under a burst,
a statement of Prefect's server at times waits for the lock for the whole busy timeout while
the connection it needs to commit first is stuck the same way, and every other writer queues
behind: ``make bench`` caught it with Prefect's 60 s (35 state proposals failing at the same
instant, the burst of twenty taking 99 s), and at 5 s it still left 5-7 s gaps where no export
finished (traced by statement: a ``create_artifact``'s second INSERT, the task-run recorder's
upsert and a ``set_state``'s IMMEDIATE transaction each waiting exactly the busy timeout; 5 of
20 bursts over 28 s, up to 30.5 s). At 1 s such a stall costs 1 s: ten bursts took 19.1-25.3 s
(median 23.0 s against 24.8 s). A writer that waited in vain gets the 503 above and tries
again; the server's own recorders retry their batches (none was dropped).

And the requests that read and then write never meet that failure: their transactions begin
``IMMEDIATE`` (SQLite's write lock first, waiting for it as any writer does) instead of
DEFERRED, the remedy Prefect's own SQLite configuration names for read-then-write transactions
and applies to state proposals (``WRITE_FIRST``):

- taking and giving back an export slot (``increment-with-lease``, ``decrement-with-lease``):
  a deployment run's slot collided with its own Running events and logs, and 2 of 3 traced
  1M-row runs took a 503 there and lost 0.5-1.1 s before their first row;
- creating a deployment's run (the API's launch) and updating a run or its labels (the
  engine's and the worker's, at every start): in a burst of twenty 10-row exports, each
  export's ``create_flow_run`` was refused once on average and its labels update 0.95 times,
  every refusal a request done twice and a launch 0.25-1 s later; marked, 0.05 and 0 (42.5
  -> 40.6 requests per export).

And a JSON schema that passed Prefect's metaschema check is not checked again
(``remember_valid_schemas``): each run created from a deployment checked its deployment's
parameter schema and its pool's job-variable schema three times, ~37 ms of every launch;
a deployment's parameter schema is checked when the deployment is saved
(``check_parameter_schemas_when_saved``), not in the first run of each entity after a start.

And a new SQLite database starts as a copy of one migrated once (``start_from_template``):
Prefect otherwise runs each of its ~150 migrations on every fresh database, 9.5 s on two
cores, for each fresh home (a bench run, the test suite's three servers).

And its event persister writes each flush's events and their resources with INSERTs SQLAlchemy
compiles once (``events_written_by_cached_statements``), not anew for every flush: ~25-55 ms
of the server's CPU per small export.

And it runs on uvloop's event loop and httptools' HTTP parser, both installed with the
project; uvicorn picks them by itself when they are present (as ``prefect server start`` does
where uvicorn's "standard" extra is installed). Against asyncio's loop and h11, the server's CPU
per small export fell from 1.08 to 0.88 s, and its CPU in a burst of twenty from 16.4-19.0 s
to 14.9-17.7 s (alternating serves): that one process's CPU is what bounds a burst.

Everything else is ``prefect server start``'s foreground path: the same app
(``create_app(final=True)``: API, UI and the server's services), settings and uvicorn options.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import gc
import json
import os
import random
import re
import shutil
import sqlite3
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

BUSY_TIMEOUT_MS = 1000
"""How long a connection of the server waits for SQLite's write lock (Prefect sets 60,000)."""

RETRY_AFTER_S = (0.25, 1.0)
"""The range a 503 without its own ``Retry-After`` is given one from (seconds)."""


WRITE_FIRST = (
    r"POST /api/v2/concurrency_limits/(increment|decrement)-with-lease",
    r"POST /api/deployments/[^/]+/create_flow_run",
    r"PATCH /api/flow_runs/[^/]+(/labels)?",
)
"""Requests whose transaction reads and then writes, begun ``IMMEDIATE`` (``WriteFirst``), as
``METHOD path`` patterns: taking and giving back an export slot, creating a deployment's run
(the API's launch: it reads the deployment and the idempotency key first), and updating a
run or its labels (the engine's and the worker's, at every start)."""

_write_first: ContextVar[bool] = ContextVar("exportflow_write_first", default=False)


class WriteFirst:
    """ASGI middleware: the database transactions of a request matching ``WRITE_FIRST``
    begin ``IMMEDIATE`` (with ``immediate_transactions_when_asked`` installed)."""

    def __init__(self, app: ASGIApp, patterns: tuple[str, ...] = WRITE_FIRST) -> None:
        self.app = app
        self.pattern = re.compile("|".join(f"(?:{p})" for p in patterns))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = f"{scope.get('method', '')} {scope.get('path', '')}"
        if scope["type"] != "http" or not self.pattern.fullmatch(request):
            await self.app(scope, receive, send)
            return
        token = _write_first.set(True)
        try:
            await self.app(scope, receive, send)
        finally:
            _write_first.reset(token)


def immediate_transactions_when_asked() -> None:
    """Prefect's SQLite transactions begin ``IMMEDIATE`` (``with_for_update``) inside a request
    ``WriteFirst`` marked, and as Prefect chose everywhere else."""
    from prefect.server.database.configurations import AioSqliteConfiguration

    original = AioSqliteConfiguration.begin_transaction
    if getattr(original, "write_first", False):
        return

    def begin_transaction(self: Any, session: Any, with_for_update: bool = False) -> Any:
        return original(self, session, with_for_update=with_for_update or _write_first.get())

    begin_transaction.write_first = True  # type: ignore[attr-defined]
    AioSqliteConfiguration.begin_transaction = begin_transaction  # type: ignore[method-assign]


class RetrySoon:
    """ASGI middleware: a 503 response without ``Retry-After`` gets a short random one."""

    def __init__(self, app: ASGIApp, retry_after_s: tuple[float, float] = RETRY_AFTER_S) -> None:
        self.app = app
        self.low, self.high = retry_after_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_retry_after(message: Message) -> None:
            if message["type"] == "http.response.start" and message.get("status") == 503:
                headers = list(message.get("headers") or [])
                if not any(name.lower() == b"retry-after" for name, _ in headers):
                    seconds = random.uniform(self.low, self.high)
                    header = (b"retry-after", f"{seconds:.2f}".encode())
                    message = {**message, "headers": [*headers, header]}
            await send(message)

        await self.app(scope, receive, send_with_retry_after)


class FreezeAfterStartup:
    """An ASGI app that moves everything the wrapped app holds once it has started (imports,
    ORM mappers, compiled schemas, services) out of the garbage collector's reach: a
    ``gc.collect()`` and a ``gc.freeze()`` when the app reports its lifespan startup complete.

    A long-lived server allocates all the time, and every full collection walked that whole
    heap: in the Prefect server of ``make serve``, the full collections during a burst of
    twenty small exports took ~0.9 s of its CPU (two of them), and one landed in the first
    export's ``create_flow_run`` (0.4 s). What is frozen stays in memory, as it would have:
    it lives as long as the server."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            return await self.app(scope, receive, send)

        async def sent(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete":
                gc.collect()
                gc.freeze()
            await send(message)

        return await self.app(scope, receive, sent)


SCHEMAS_REMEMBERED = 256
"""At most this many valid schemas are remembered (a deployment's parameters, a pool's job
variables: a handful per server)."""


def remember_valid_schemas(validator: Any = None, most: int = SCHEMAS_REMEMBERED) -> None:
    """Prefect's check of a JSON schema against JSON Schema's metaschema runs once per schema.

    Every flow run created from a deployment (each export the API launches) has its parameters
    and job variables validated, and each validation first checks the schema itself against
    the metaschema -- three times per run (the deployment's parameter schema once, the work
    pool's job-variable schema twice), ~37 of the ~43 ms the validations take on two idle
    cores, for schemas that change only when a deployment or pool is saved again. A schema
    that passed is remembered by its content (and format checker); one that fails is checked,
    and refused, every time. The instances are still validated every time."""
    if validator is None:
        from prefect.utilities.schema_tools.validation import _VALIDATOR as validator
    original = validator.__dict__["check_schema"]
    if getattr(original, "remembers", False):
        return
    check = original.__func__
    valid: dict[tuple[str, int], None] = {}

    def check_schema(cls: Any, schema: Any, *args: Any, **kwargs: Any) -> None:
        try:
            checker = kwargs.get("format_checker", args[0] if args else None)
            key = (json.dumps(schema, sort_keys=True), id(checker))
        except (TypeError, ValueError):  # not plain JSON: check it as Prefect would
            check(cls, schema, *args, **kwargs)
            return
        if key in valid:
            return
        check(cls, schema, *args, **kwargs)
        if len(valid) >= most:
            valid.pop(next(iter(valid)))
        valid[key] = None

    check_schema.remembers = True  # type: ignore[attr-defined]
    validator.check_schema = classmethod(check_schema)


def check_parameter_schemas_when_saved(deployments: Any = None) -> None:
    """A deployment's parameter schema is checked against the metaschema when the deployment
    is saved (``prefect deploy``: created or updated), not in its first run's request.

    With ``remember_valid_schemas`` each schema is checked once per server process; without
    this, that once is the first export of each entity after a start (~37 ms of its
    ``create_flow_run`` on two cores). The check is the one Prefect's run creation makes
    (``validate`` -> ``jsonschema.validate`` -> ``check_schema`` of the preprocessed schema),
    so it is the same remembered entry. Saving never fails because of it: a schema that does
    not pass is left for the run creation to refuse, as Prefect does."""
    if deployments is None:
        from prefect.server.models import deployments
    for name in ("create_deployment", "update_deployment"):
        original = getattr(deployments, name)
        if getattr(original, "checks_schema", False):
            continue
        setattr(deployments, name, _checking_schema(original))


def _checking_schema(original: Any) -> Any:
    import functools

    @functools.wraps(original)
    async def saved(*args: Any, **kwargs: Any) -> Any:
        result = await original(*args, **kwargs)
        schema = getattr(kwargs.get("deployment"), "parameter_openapi_schema", None)
        if isinstance(schema, dict):
            from prefect.utilities.schema_tools.validation import _VALIDATOR, preprocess_schema

            with contextlib.suppress(Exception):  # refused, as before, when a run is made
                _VALIDATOR.check_schema(preprocess_schema(schema))
        return result

    saved.checks_schema = True  # type: ignore[attr-defined]
    return saved


def events_written_by_cached_statements(storage: Any = None) -> None:
    """Prefect's event persister writes a batch of events to SQLite with INSERTs that
    SQLAlchemy compiles once per server, not once per batch.

    Prefect inserts a batch's events and their resources with SQLite's dialect ``insert``,
    each as one multi-row ``VALUES``. SQLAlchemy gives neither a cache key (the dialect's
    ``Insert`` has none, for its ``ON CONFLICT`` clauses; a multi-row ``VALUES`` has none
    either), so every flush compiled both anew, in proportion to its rows: traced per
    statement on the server, 10-14 ms for a flush's ``event_resources`` and 4-9 ms for its
    events, ~25-55 ms of the server's CPU per small export. Here each is the table's plain
    ``INSERT`` (no ``ON CONFLICT`` was used) executed for the batch's rows, compiled once.
    What is written is the same: the same batches, the ids already stored skipped, the
    resources only of the events inserted, in the same transaction. PostgreSQL's writer
    (already one statement for a batch's rows) is not touched."""
    if storage is None:
        from prefect.server.events.storage import database as storage
    if getattr(storage._write_sqlite_events, "cached", False):
        return
    import sqlalchemy as sa
    from prefect.server.database import db_injector

    @db_injector
    async def write_sqlite_events(db: Any, session: Any, events: list[Any]) -> None:
        for batch in storage._in_safe_batches(events):
            stored = await session.scalars(
                sa.select(db.Event.id).where(db.Event.id.in_({event.id for event in batch}))
            )
            known = set(stored.all())
            fresh = [event for event in batch if event.id not in known]
            if not fresh:
                continue
            await session.execute(
                sa.insert(db.Event.__table__), [event.as_database_row() for event in fresh]
            )
            resources = [row for event in fresh for row in event.as_database_resource_rows()]
            if resources:
                await session.execute(sa.insert(db.EventResource.__table__), resources)

    write_sqlite_events.cached = True  # type: ignore[attr-defined]
    storage._write_sqlite_events = write_sqlite_events


_LISTENING: set[int] = set()


def shorter_sqlite_lock_waits(busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> None:
    """Every SQLite connection a pool checks out waits at most ``busy_timeout_ms`` for the
    write lock. Prefect sets its own value when it opens a connection; this runs after that,
    at the first checkout of each DB-API connection (a reconnect gets it again)."""
    import sqlalchemy as sa
    from sqlalchemy.pool import Pool

    if busy_timeout_ms in _LISTENING:
        return

    def on_checkout(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        if record.info.get("busy_timeout_set_on") is dbapi_connection:
            return
        if "sqlite" not in type(dbapi_connection).__module__:
            return
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        finally:
            cursor.close()
        record.info["busy_timeout_set_on"] = dbapi_connection

    sa.event.listen(Pool, "checkout", on_checkout)
    _LISTENING.add(busy_timeout_ms)


TEMPLATES = Path(__file__).resolve().parent.parent / ".exportflow" / "cache"
"""Where the migrated template databases are kept, one per Prefect version."""


def start_from_template(url: str, templates: Path = TEMPLATES) -> str:
    """If ``url`` is a SQLite database that does not exist yet, make it a copy of a database
    Prefect migrated once (this Prefect version, all migrations, no rows), so that the server
    finds it up to date instead of migrating it step by step. Returns what was done.

    The template is made the first time (Prefect's own migration, in this process, of a file
    of its own, under a lock: servers starting at once make it once), and made again if it is
    not a migrated database. Anything that goes wrong leaves the database to Prefect's own
    migration, as without this."""
    import prefect
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite") or parsed.database in (None, "", ":memory:"):
        return "not a SQLite file"
    target = Path(parsed.database)
    if target.exists() and target.stat().st_size:
        return "exists"
    template = templates / f"prefect-{prefect.__version__}.db"
    try:
        with _locked(templates / f"{template.name}.lock"):
            if not _revision(template):
                _make_template(template)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
        shutil.copyfile(template, partial)
        os.replace(partial, target)  # a server never sees half a copy
    except Exception as exc:  # whatever it was, Prefect migrates the database as it would
        print(f"no migrated template ({exc}); Prefect migrates the new database", flush=True)
        return "migrated by Prefect"
    return f"copied {template.name}"


def _revision(path: Path) -> str | None:
    """The alembic revision of the SQLite database at ``path``; None if it has none."""
    if not path.exists():
        return None
    uri = f"{path.resolve().as_uri()}?mode=ro"
    try:
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
            row = db.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.Error:
        return None
    return str(row[0]) if row else None


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _make_template(template: Path) -> None:
    """Run Prefect's migrations on a new database file of the template's own (whatever URL the
    environment names: the settings are overridden, not the variables), then keep a compact,
    self-contained copy of it (``VACUUM INTO``: no WAL beside it) as ``template``."""
    import asyncio

    from prefect.server.database import dependencies, provide_database_interface
    from prefect.settings import PREFECT_SERVER_DATABASE_CONNECTION_URL, temporary_settings

    work = template.with_name(f"{template.name}.{os.getpid()}.work")
    made = template.with_name(f"{template.name}.{os.getpid()}.made")

    async def migrate() -> None:
        db = provide_database_interface()
        await db.create_db()
        await (await db.engine()).dispose()

    # Prefect keeps the database configuration it first builds for the process: the
    # template's must not become the server's (it would then serve from the template).
    kept = dependencies.MODELS_DEPENDENCIES.copy()
    try:
        url = f"sqlite+aiosqlite:///{work}"
        try:
            with temporary_settings(updates={PREFECT_SERVER_DATABASE_CONNECTION_URL: url}):
                asyncio.run(migrate())
        finally:
            dependencies.MODELS_DEPENDENCIES.update(kept)
        if not _revision(work):
            raise RuntimeError(f"Prefect's migration left no revision in {work}")
        with contextlib.closing(sqlite3.connect(work)) as db:
            db.execute("VACUUM INTO ?", (str(made),))
        os.replace(made, template)
    finally:
        for leftover in (made, *work.parent.glob(f"{work.name}*")):
            leftover.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> None:
    from prefect.settings import get_current_settings

    server = get_current_settings().server
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default=server.api.host)
    parser.add_argument("--port", type=int, default=server.api.port)
    args = parser.parse_args(argv)

    import uvicorn
    from prefect.server.api.server import create_app
    from prefect.settings import PREFECT_API_DATABASE_CONNECTION_URL

    from core.warmup import complete_models, endpoint_contexts

    shorter_sqlite_lock_waits()
    immediate_transactions_when_asked()
    remember_valid_schemas()
    check_parameter_schemas_when_saved()
    events_written_by_cached_statements()
    start_from_template(str(PREFECT_API_DATABASE_CONNECTION_URL.value()))
    app = create_app(final=True)
    complete_models()  # Prefect's schemas, built now rather than in the first export's requests
    endpoint_contexts(app)  # each route's source location, read now rather than at its first use
    uvicorn.run(
        app=FreezeAfterStartup(RetrySoon(WriteFirst(app))),
        host=args.host,
        port=args.port,
        timeout_keep_alive=server.api.keepalive_timeout,
        ws_ping_interval=server.api.websocket_ping_interval,
        ws_ping_timeout=server.api.websocket_ping_timeout,
        log_level=server.logging_level.lower(),
    )


if __name__ == "__main__":
    main()
