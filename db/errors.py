"""Which database errors are worth another attempt (a lost connection, a server shutting
down, a serialization failure or deadlock) and which are not."""

from __future__ import annotations

import psycopg
import sqlalchemy as sa

_TRANSIENT_SQLSTATES = frozenset(
    {
        "40001",  # serialization_failure
        "40P01",  # deadlock_detected
        "57P01",  # admin_shutdown (pg_terminate_backend, a restart)
        "57P02",  # crash_shutdown
        "57P03",  # cannot_connect_now
    }
)


def is_transient_db(exc: BaseException) -> bool:
    """A lost connection or an error PostgreSQL itself says to retry."""
    if isinstance(exc, sa.exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        if exc.orig is not None:
            return is_transient_db(exc.orig)
        return False
    if not isinstance(exc, psycopg.Error):
        return False
    state = exc.sqlstate
    if state is None:  # raised by the client: the connection broke
        return isinstance(exc, psycopg.OperationalError)
    return state in _TRANSIENT_SQLSTATES or state.startswith("08")  # 08: connection exception
