"""The Prefect server ``make serve`` runs: clients retry a 503 soon (``RetrySoon``), SQLite waits
and transactions, and new databases start from a migrated template."""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

import httpx
import pytest
from prefect.client.base import PrefectHttpxAsyncClient

from devtools.prefect_server import FreezeAfterStartup, RetrySoon, start_from_template


def _app(status: int, headers: list[tuple[bytes, bytes]] | None = None) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": status, "headers": headers or []})
        await send({"type": "http.response.body", "body": b"{}"})

    return app


async def _get(app: Any) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as client:
        return await client.get("http://prefect/api/health")


def test_a_503_without_retry_after_gets_a_short_one() -> None:
    waits = set()
    for _ in range(20):
        response = asyncio.run(_get(RetrySoon(_app(503))))
        assert response.status_code == 503
        waits.add(float(response.headers["retry-after"]))
    assert all(0.25 <= w <= 1.0 for w in waits)
    assert len(waits) > 1  # drawn at random: a burst's writers do not all return at once


@pytest.mark.parametrize(
    ("status", "headers", "expected"),
    [
        (503, [(b"Retry-After", b"7")], "7"),  # the app's own value stands
        (200, [], None),
        (423, [], None),  # a refused concurrency slot has Prefect's own Retry-After logic
    ],
)
def test_other_responses_are_left_alone(
    status: int, headers: list[tuple[bytes, bytes]], expected: str | None
) -> None:
    response = asyncio.run(_get(RetrySoon(_app(status, headers))))
    assert response.status_code == status
    assert response.headers.get("retry-after") == expected


def test_prefects_client_retries_after_the_short_wait_not_its_2s_backoff(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """What the header is for: Prefect's own client, given a 503 then a 200, says it will
    wait 0.25-1 s (plus up to 20% jitter), not the 2 s its exponential backoff starts at."""
    calls: list[int] = []

    async def flaky(scope: Any, receive: Any, send: Any) -> None:
        calls.append(1)
        await _app(503 if len(calls) == 1 else 200)(scope, receive, send)

    async def run() -> httpx.Response:
        transport = httpx.ASGITransport(app=RetrySoon(flaky))
        async with PrefectHttpxAsyncClient(transport=transport) as client:
            return await client.get("http://prefect/api/health")

    with caplog.at_level(logging.DEBUG, logger="prefect.client"):
        response = asyncio.run(run())
    assert response.status_code == 200
    assert len(calls) == 2
    waits = [
        float(m[1])
        for r in caplog.records
        if (m := re.search(r"Another attempt will be made in ([0-9.]+)s", r.getMessage()))
    ]
    assert len(waits) == 1
    assert 0.25 <= waits[0] <= 1.0 * 1.2 + 1e-9


def test_prefects_sqlite_connections_wait_1s_not_60s_for_the_write_lock(tmp_path: Any) -> None:
    """Prefect's own database configuration (its engine, its on-connect PRAGMAs) with the
    launcher's listener: a checked-out connection waits at most 1 s for the lock."""
    from prefect.server.database.configurations import AioSqliteConfiguration

    from devtools.prefect_server import BUSY_TIMEOUT_MS, shorter_sqlite_lock_waits

    async def busy_timeouts() -> list[Any]:
        config = AioSqliteConfiguration(
            connection_url=f"sqlite+aiosqlite:///{tmp_path / 'prefect.db'}"
        )
        engine = await config.engine()
        seen = []
        try:
            for _ in range(2):  # a new connection, then the same one checked out again
                async with engine.connect() as conn:
                    seen.append((await conn.exec_driver_sql("PRAGMA busy_timeout")).scalar())
        finally:
            await engine.dispose()
        return seen

    shorter_sqlite_lock_waits()
    assert asyncio.run(busy_timeouts()) == [BUSY_TIMEOUT_MS, BUSY_TIMEOUT_MS] == [1000, 1000]


def test_only_the_read_then_write_requests_are_marked_write_first() -> None:
    from devtools import prefect_server

    seen: dict[str, bool] = {}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen[f"{scope['method']} {scope['path']}"] = prefect_server._write_first.get()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    async def call(method: str, path: str) -> None:
        transport = httpx.ASGITransport(app=prefect_server.WriteFirst(app))
        async with httpx.AsyncClient(transport=transport, base_url="http://server") as client:
            await client.request(method, path)

    run = "/api/flow_runs/8f2f7c1e-4c1e-4d0a-9a57-0d6f1b7f3b11"
    expected = {
        "POST /api/v2/concurrency_limits/increment-with-lease": True,
        "POST /api/v2/concurrency_limits/decrement-with-lease": True,
        "POST /api/deployments/5b0c3f8e-1b7d-4a47-8c51-3c1d2b4f6e7a/create_flow_run": True,
        f"PATCH {run}": True,
        f"PATCH {run}/labels": True,
        f"GET {run}": False,
        f"POST {run}/set_state": False,  # Prefect begins state proposals IMMEDIATE itself
        "POST /api/flow_runs/filter": False,
        "PATCH /api/deployments/5b0c3f8e-1b7d-4a47-8c51-3c1d2b4f6e7a": False,
        "POST /api/v2/concurrency_limits/increment-with-lease/extra": False,
    }
    for request in expected:
        asyncio.run(call(*request.split(" ", 1)))
    assert seen == expected


@pytest.mark.parametrize("marked", [False, True])
def test_a_marked_read_then_write_survives_a_write_committed_in_between(
    tmp_path: Any, marked: bool
) -> None:
    """The control (unmarked, Prefect's DEFERRED): SQLite refuses the write at once, "database is
    locked", because another write committed after this transaction read. Marked, it began
    IMMEDIATE: the other writer waits for it instead, and both writes land."""
    import sqlalchemy as sa
    from prefect.server.database.configurations import AioSqliteConfiguration
    from sqlalchemy.ext.asyncio import AsyncSession

    from devtools import prefect_server

    prefect_server.immediate_transactions_when_asked()
    config = AioSqliteConfiguration(connection_url=f"sqlite+aiosqlite:///{tmp_path / 'p.db'}")

    async def other_writer(engine: Any) -> None:
        prefect_server._write_first.set(False)  # an unmarked request
        async with AsyncSession(engine) as session, config.begin_transaction(session):
            await session.execute(sa.text("UPDATE t SET n = n + 10"))

    async def scenario() -> tuple[str | None, int]:
        engine = await config.engine()
        error = None
        try:
            async with engine.begin() as conn:
                await conn.exec_driver_sql("CREATE TABLE t (n INTEGER)")
                await conn.exec_driver_sql("INSERT INTO t VALUES (0)")
            prefect_server._write_first.set(marked)
            async with AsyncSession(engine) as session:
                try:
                    async with config.begin_transaction(session):
                        await session.execute(sa.text("SELECT n FROM t"))
                        other = asyncio.create_task(other_writer(engine))
                        await asyncio.sleep(0.3)  # the other write commits now, if it can
                        await session.execute(sa.text("UPDATE t SET n = n + 1"))
                except sa.exc.OperationalError as exc:
                    error = str(exc.orig)
                await other
            async with engine.connect() as conn:
                final = (await conn.exec_driver_sql("SELECT n FROM t")).scalar_one()
        finally:
            await engine.dispose()
        return error, int(final)

    error, final = asyncio.run(scenario())
    if marked:
        assert (error, final) == (None, 11)
    else:
        assert error is not None and "database is locked" in error
        assert final == 10


def test_serves_clients_skip_the_version_check_and_csrf_token_of_their_own_server() -> None:
    from devtools.serve import prefect_client_defaults

    env: dict[str, str] = {}
    prefect_client_defaults(env, {})
    assert env == {
        "PREFECT_CLIENT_MAX_RETRIES": "30",
        "PREFECT_CLIENT_SERVER_VERSION_CHECK_ENABLED": "false",
        "PREFECT_CLIENT_CSRF_SUPPORT_ENABLED": "false",
    }

    protected: dict[str, str] = {"PREFECT_CLIENT_MAX_RETRIES": "8"}  # a user's own choice stays
    prefect_client_defaults(protected, {"PREFECT_SERVER_CSRF_PROTECTION_ENABLED": "true"})
    assert protected["PREFECT_CLIENT_MAX_RETRIES"] == "8"
    assert "PREFECT_CLIENT_CSRF_SUPPORT_ENABLED" not in protected  # tokens are needed then


def _sqlite_with(path: Any, marker: str, revision: str | None = None) -> None:
    import contextlib
    import sqlite3

    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute(f"CREATE TABLE {marker} (x int)")
        if revision:
            db.execute("CREATE TABLE alembic_version (version_num varchar(32) NOT NULL)")
            db.execute("INSERT INTO alembic_version VALUES (?)", (revision,))


def _tables(path: Any) -> list[str]:
    import contextlib
    import sqlite3

    with contextlib.closing(sqlite3.connect(path)) as db:
        return [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]


def test_a_new_sqlite_database_starts_as_a_copy_of_the_migrated_template(tmp_path: Any) -> None:
    import prefect

    templates = tmp_path / "cache"
    templates.mkdir()
    _sqlite_with(templates / f"prefect-{prefect.__version__}.db", "migrated", "a3b9c7d2e5f1")
    target = tmp_path / "home" / "prefect.db"

    done = start_from_template(f"sqlite+aiosqlite:///{target}", templates)

    assert done == f"copied prefect-{prefect.__version__}.db"
    assert _tables(target) == ["migrated", "alembic_version"]
    assert sorted(p.name for p in target.parent.iterdir()) == ["prefect.db"]  # no partial left
    # a database that exists is Prefect's to upgrade, never replaced
    assert start_from_template(f"sqlite+aiosqlite:///{target}", templates) == "exists"
    _sqlite_with(target, "runs")
    assert start_from_template(f"sqlite+aiosqlite:///{target}", templates) == "exists"
    assert sorted(_tables(target)) == ["alembic_version", "migrated", "runs"]


def test_a_template_that_is_not_a_migrated_database_is_made_again(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a first attempt that migrated the wrong file left (an empty database): found
    unmigrated, made again, never copied as it is. (Prefect's migration itself is the
    integration tier's: tests/integration/test_prefect_database.py.)"""
    import prefect

    from devtools import prefect_server

    templates = tmp_path / "cache"
    templates.mkdir()
    template = templates / f"prefect-{prefect.__version__}.db"
    _sqlite_with(template, "unmigrated")
    made: list[Any] = []

    def make(path: Any) -> None:
        made.append(path)
        path.unlink()
        _sqlite_with(path, "migrated", "a3b9c7d2e5f1")

    monkeypatch.setattr(prefect_server, "_make_template", make)
    target = tmp_path / "prefect.db"
    assert start_from_template(f"sqlite+aiosqlite:///{target}", templates).startswith("copied")
    assert made == [template]
    assert "alembic_version" in _tables(target)


def test_other_databases_and_a_template_that_cannot_be_made_are_left_to_prefect(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    postgres = "postgresql+asyncpg://prefect@db/prefect"
    assert start_from_template(postgres, tmp_path) == "not a SQLite file"
    assert start_from_template("sqlite+aiosqlite:///:memory:", tmp_path) == "not a SQLite file"

    blocked = tmp_path / "a-file"
    blocked.write_text("")  # the templates folder cannot be made here
    target = tmp_path / "home" / "prefect.db"
    assert start_from_template(f"sqlite+aiosqlite:///{target}", blocked) == "migrated by Prefect"
    assert not target.exists()
    assert "Prefect migrates the new database" in capsys.readouterr().out


def test_a_valid_schema_is_checked_against_the_metaschema_once() -> None:
    import jsonschema
    from jsonschema.validators import create

    from devtools.prefect_server import remember_valid_schemas

    base = jsonschema.Draft202012Validator
    validator = create(meta_schema=base.META_SCHEMA, validators=dict(base.VALIDATORS))
    checked: list[Any] = []
    original = validator.__dict__["check_schema"].__func__

    def counting(cls: Any, schema: Any, *args: Any, **kwargs: Any) -> None:
        checked.append(schema)
        original(cls, schema, *args, **kwargs)

    validator.check_schema = classmethod(counting)  # type: ignore[method-assign,assignment]
    remember_valid_schemas(validator, most=2)
    remember_valid_schemas(validator, most=2)  # installing twice wraps once

    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    same = {"properties": {"n": {"type": "integer"}}, "type": "object"}  # other key order
    validator.check_schema(schema)
    validator.check_schema(same)
    assert len(checked) == 1
    validator.check_schema(schema, format_checker=base.FORMAT_CHECKER)  # another checker
    assert len(checked) == 2

    bad = {"type": 12}
    for _ in range(2):  # a schema that fails is checked, and refused, every time
        with pytest.raises(jsonschema.SchemaError):
            validator.check_schema(bad)
    assert len(checked) == 4

    # instances are still validated every time
    jsonschema.validate({"n": 1}, schema, cls=validator)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"n": "one"}, schema, cls=validator)
    assert len(checked) == 4

    # at most `most` remembered: the oldest is checked again
    validator.check_schema({"type": "string"})
    validator.check_schema(schema)
    assert len(checked) == 6


def test_prefects_validation_still_refuses_bad_parameters_with_schemas_remembered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from prefect.utilities.schema_tools import ValidationError, validate
    from prefect.utilities.schema_tools.validation import _VALIDATOR

    from devtools.prefect_server import remember_valid_schemas

    # Prefect's own check comes back after the test
    monkeypatch.setattr(_VALIDATOR, "check_schema", _VALIDATOR.__dict__["check_schema"])
    remember_valid_schemas()
    assert _VALIDATOR.__dict__["check_schema"].__func__.remembers
    schema = {
        "type": "object",
        "properties": {"rows": {"type": "integer", "minimum": 1}},
        "required": ["rows"],
    }
    for _ in range(2):
        assert validate({"rows": 3}, schema, raise_on_error=True) == []
        with pytest.raises(ValidationError, match="rows"):
            validate({"rows": 0}, schema, raise_on_error=True)


def test_a_deployments_parameter_schema_is_checked_when_it_is_saved(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Saved (created or updated): its schema is checked then, so the first run made from it
    is not the one that pays for the check; a bad schema does not stop the save, and the run
    creation still refuses it."""
    import asyncio
    import types

    import jsonschema
    from prefect.utilities.schema_tools import validate
    from prefect.utilities.schema_tools.validation import _VALIDATOR

    from devtools.prefect_server import (
        check_parameter_schemas_when_saved,
        remember_valid_schemas,
    )

    checked: list[Any] = []
    original = _VALIDATOR.__dict__["check_schema"].__func__

    def counting(cls: Any, schema: Any, *args: Any, **kwargs: Any) -> None:
        checked.append(schema)
        original(cls, schema, *args, **kwargs)

    monkeypatch.setattr(_VALIDATOR, "check_schema", classmethod(counting))
    remember_valid_schemas()
    saves: list[str] = []

    async def create_deployment(session: Any, deployment: Any) -> str:
        saves.append("create")
        return "created"

    async def update_deployment(session: Any, deployment_id: Any, deployment: Any) -> bool:
        saves.append("update")
        return True

    models = types.SimpleNamespace(
        create_deployment=create_deployment, update_deployment=update_deployment
    )
    check_parameter_schemas_when_saved(models)
    check_parameter_schemas_when_saved(models)  # installing twice wraps once

    schema = {
        "type": "object",
        "properties": {"rows": {"type": "integer", "minimum": 1}},
        "required": ["rows"],
    }
    saved = types.SimpleNamespace(parameter_openapi_schema=schema)
    assert asyncio.run(models.create_deployment(session=None, deployment=saved)) == "created"
    assert len(checked) == 1
    assert validate({"rows": 3}, schema, raise_on_error=True) == []  # the run: no new check
    assert len(checked) == 1

    other = {"type": "object", "properties": {"tenant": {"type": "string"}}}
    updated = types.SimpleNamespace(parameter_openapi_schema=other)
    assert asyncio.run(models.update_deployment(None, deployment_id=1, deployment=updated))
    no_schema = types.SimpleNamespace(parameter_openapi_schema=None)  # an update of its tags
    asyncio.run(models.update_deployment(session=None, deployment_id=1, deployment=no_schema))
    assert saves == ["create", "update", "update"]
    assert len(checked) == 2
    validate({"tenant": "acme"}, other, raise_on_error=True)
    assert len(checked) == 2

    bad = {"type": "object", "properties": {"rows": {"type": 12}}}
    broken = types.SimpleNamespace(parameter_openapi_schema=bad)
    assert asyncio.run(models.create_deployment(session=None, deployment=broken)) == "created"
    with pytest.raises(jsonschema.SchemaError):
        validate({"rows": 3}, bad, raise_on_error=True)


def test_an_asgi_app_behind_freeze_after_startup_has_its_heap_frozen_once_started() -> None:
    """``FreezeAfterStartup`` (the Prefect server of ``make serve``): what exists when the app
    reports its startup complete leaves the collector's reach; requests pass untouched."""
    import gc

    sent: list[dict[str, Any]] = []
    frozen_when_sent: list[int] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await receive()  # lifespan.startup
            await send({"type": "lifespan.startup.complete"})
        else:
            await send({"type": "http.response.start", "status": 204})

    async def receive() -> dict[str, Any]:
        return {"type": "lifespan.startup"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        frozen_when_sent.append(gc.get_freeze_count())

    gc.unfreeze()
    try:
        asyncio.run(FreezeAfterStartup(app)({"type": "http"}, receive, send))
        assert frozen_when_sent == [0]  # a request: nothing frozen
        asyncio.run(FreezeAfterStartup(app)({"type": "lifespan"}, receive, send))
        assert frozen_when_sent[1] > 0  # frozen before the server is told it started
        assert sent == [
            {"type": "http.response.start", "status": 204},
            {"type": "lifespan.startup.complete"},
        ]
    finally:
        gc.unfreeze()


def test_the_servers_run_on_uvloop_and_httptools() -> None:
    """uvicorn's defaults (``auto``), which serve's Prefect server and API use, pick the C event
    loop and HTTP parser the project installs; without them the Prefect server spends ~18 % more
    CPU per export."""
    import uvicorn

    config = uvicorn.Config(app=_app(200), lifespan="off")
    config.load()
    assert config.http_protocol_class.__module__ == "uvicorn.protocols.http.httptools_impl"
    loop = config.get_loop_factory()()
    try:
        assert type(loop).__module__.startswith("uvloop")
    finally:
        loop.close()


def test_the_event_writer_is_replaced_once_by_one_whose_inserts_sqlalchemy_caches() -> None:
    """The replacement's INSERTs have cache keys (compiled once per server), where Prefect's
    SQLite dialect inserts have none; installing it twice keeps the first."""
    import types

    import sqlalchemy as sa
    from prefect.server.database import provide_database_interface

    from devtools.prefect_server import events_written_by_cached_statements

    async def original(*args: Any) -> None:
        raise AssertionError("not called")

    storage = types.SimpleNamespace(_write_sqlite_events=original, _in_safe_batches=None)
    events_written_by_cached_statements(storage)
    installed = storage._write_sqlite_events
    assert installed is not original and installed.cached
    events_written_by_cached_statements(storage)
    assert storage._write_sqlite_events is installed

    db = provide_database_interface()
    assert db.queries.insert(db.Event)._generate_cache_key() is None  # Prefect's: no key
    for table in (db.Event.__table__, db.EventResource.__table__):
        assert sa.insert(table)._generate_cache_key() is not None
