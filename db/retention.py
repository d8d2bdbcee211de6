"""Purging the API's bookkeeping tables: idempotency keys and rate-limit windows.

The jobs themselves are purged by ``db.jobs.purge_jobs``, audit events by ``db.audit.purge``;
the maintenance tasks (``tasks.retention``) call all three.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa


def purge_idempotency_keys(engine: sa.Engine, before: datetime) -> int:
    """Forget ``Idempotency-Key`` replays recorded before ``before``."""
    with engine.begin() as conn:
        result = conn.execute(
            sa.text("DELETE FROM api_idempotency_keys WHERE created_at < :before"),
            {"before": before},
        )
    return int(result.rowcount or 0)


def purge_rate_limit_windows(engine: sa.Engine, before: datetime) -> int:
    """Drop rate-limit counters of windows that started before ``before`` (closed windows)."""
    with engine.begin() as conn:
        result = conn.execute(
            sa.text("DELETE FROM api_rate_limits WHERE window_start < :before"),
            {"before": before},
        )
    return int(result.rowcount or 0)
