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
