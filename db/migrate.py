"""Schema management: alembic migrations for exportflow's own tables (``export_jobs``, ...)."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"


def upgrade(engine: sa.Engine) -> None:
    """Bring ``export_jobs`` (and later exportflow tables) to the newest revision."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        # One migrator at a time when several processes start together.
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(4242001)"))
        config.attributes["connection"] = conn
        command.upgrade(config, "heads")  # independent branches of migrations all apply
