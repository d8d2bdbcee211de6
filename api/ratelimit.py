"""Per-key rate limit on creating exports, counted in PostgreSQL so it holds across processes.

A fixed window: one row per (key, window start), incremented by an upsert; the row lock
serialises concurrent requests of the same key.
"""

from __future__ import annotations

import math

import sqlalchemy as sa


def hit(engine: sa.Engine, app_id: str, limit: int, window_s: int) -> int | None:
    """Count one request; None if allowed, else the seconds until the window resets."""
    with engine.begin() as conn:
        row = conn.execute(
            sa.text(
                "INSERT INTO api_rate_limits (app_id, window_start, hits)"
                " VALUES (:app, to_timestamp(floor(extract(epoch FROM now()) / :w) * :w), 1)"
                " ON CONFLICT (app_id, window_start)"
                " DO UPDATE SET hits = api_rate_limits.hits + 1"
                " RETURNING hits,"
                " extract(epoch FROM window_start + make_interval(secs => :w) - now())"
            ),
            {"app": app_id, "w": window_s},
        ).one()
        conn.execute(
            sa.text(
                "DELETE FROM api_rate_limits WHERE app_id = :app"
                " AND window_start < now() - make_interval(secs => :w)"
            ),
            {"app": app_id, "w": window_s},
        )
    hits, remaining = int(row[0]), float(row[1])
    if hits <= limit:
        return None
    return max(1, math.ceil(remaining))
