"""Schema management: alembic for ``export_jobs``; the sample source schema for demos/tests."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from db.source_schema import metadata as source_metadata

MIGRATIONS = Path(__file__).parent / "migrations"


def upgrade(engine: sa.Engine) -> None:
    """Bring ``export_jobs`` (and later exportflow tables) to the newest revision."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        # One migrator at a time when several processes start together.
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(4242001)"))
        config.attributes["connection"] = conn
        command.upgrade(config, "head")


def create_source_schema(engine: sa.Engine) -> None:
    """Create the sample application tables if missing (the real app owns them in production).

    A sample database made by an older version gets the columns and indexes added since
    (columns nullable, so tables with rows take them); nothing is dropped or retyped.
    """
    with engine.begin() as conn:
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(4242002)"))
        source_metadata.create_all(conn)
        inspector = sa.inspect(conn)
        for table in source_metadata.sorted_tables:
            present = {c["name"] for c in inspector.get_columns(table.name)}
            for column in table.columns:
                if column.name not in present:
                    kind = column.type.compile(dialect=conn.dialect)
                    conn.execute(
                        sa.text(f'ALTER TABLE "{table.name}" ADD COLUMN "{column.name}" {kind}')
                    )
            for index in table.indexes:
                index.create(conn, checkfirst=True)
