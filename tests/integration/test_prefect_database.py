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
