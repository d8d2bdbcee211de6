"""New Prefect databases start as a copy of one Prefect migrated once (``devtools.prefect_server``).

The session's Prefect server (``prefect_server``) starts through ``devtools.prefect_server`` on a
new SQLite database, so it made the template (or found it): every server of the suite, this
one included, runs on such a copy.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import prefect
import prefect.server.database
from alembic.script import ScriptDirectory
from prefect.server.database.alembic_commands import alembic_config

from devtools.prefect_server import TEMPLATES


def test_the_template_is_prefects_own_migration_to_its_head_with_no_rows(
    prefect_server: None,
) -> None:
    template = TEMPLATES / f"prefect-{prefect.__version__}.db"
    assert template.exists()
    with contextlib.closing(sqlite3.connect(template)) as db:
        revisions = {row[0] for row in db.execute("SELECT version_num FROM alembic_version")}
        runs = db.execute("SELECT count(*) FROM flow_run").fetchone()[0]
        journal = db.execute("PRAGMA journal_mode").fetchone()[0]
    config = alembic_config()
    sqlite_versions = Path(prefect.server.database.__file__).parent / "_migrations/versions/sqlite"
    config.set_main_option("version_locations", str(sqlite_versions))
    heads = set(ScriptDirectory.from_config(config).get_heads())
    assert heads and revisions == heads
    assert runs == 0
    assert journal != "wal"  # self-contained: a copy of the file is the whole database
    assert not list(TEMPLATES.glob("*.work*")) and not list(TEMPLATES.glob("*.made"))


def test_the_server_serves_from_its_own_database_not_the_template(prefect_server: None) -> None:
    """Making the template (Prefect's migration, in the server's process) leaves the server's
    database configuration as it was: what the API writes lands in its own file."""
    from prefect import get_client
    from prefect.settings import PREFECT_API_DATABASE_CONNECTION_URL
    from sqlalchemy.engine import make_url

    own = make_url(str(PREFECT_API_DATABASE_CONNECTION_URL.value())).database
    assert own
    with get_client(sync_client=True) as client:
        client.create_flow_from_name("template-check")
    for path in (own, TEMPLATES / f"prefect-{prefect.__version__}.db"):
        with contextlib.closing(sqlite3.connect(path)) as db:
            found = db.execute("SELECT count(*) FROM flow WHERE name = 'template-check'")
            assert found.fetchone()[0] == (1 if path == own else 0), path


def test_events_are_stored_once_each_with_their_related_resources(prefect_server: None) -> None:
    """The server writes events with cached INSERTs (``events_written_by_cached_statements``):
    an event sent twice is stored once, and it is found by a related resource, which only
    its ``event_resources`` rows can match."""
    import asyncio
    import time
    import uuid

    from prefect import get_client
    from prefect.events.clients import get_events_client
    from prefect.events.filters import EventFilter, EventRelatedFilter
    from prefect.events.schemas.events import Event

    marker = f"exportflow.test.{uuid.uuid4()}"
    events = [
        Event(
            event="exportflow.test.stored",
            resource={"prefect.resource.id": f"{marker}.{i}"},
            related=[
                {"prefect.resource.id": marker, "prefect.resource.role": "probe"},
                {"prefect.resource.id": f"{marker}.other", "prefect.resource.role": "other"},
            ],
            payload={"i": i},
        )
        for i in range(3)
    ]

    async def send() -> None:
        async with get_events_client() as client:
            for event in [*events, events[0]]:  # the first one twice
                await client.emit(event)

    asyncio.run(send())
    query = EventFilter(related=EventRelatedFilter(id=[marker]))
    found: list[Event] = []
    for _ in range(300):  # the persister flushes every few seconds (safety stop: 60 s)
        with get_client(sync_client=True) as client:
            found = client.read_events(query, limit=50).events
        if len(found) >= 3:
            break
        time.sleep(0.2)
    assert sorted(e.id for e in found) == sorted(e.id for e in events)
    for event in found:
        assert {(r.id, r.role) for r in event.related} == {
            (marker, "probe"),
            (f"{marker}.other", "other"),
        }
        assert event.payload["i"] in (0, 1, 2)
