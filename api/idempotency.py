"""``Idempotency-Key``: same key + same body -> the first response; different body -> 422."""

from __future__ import annotations

import json
import uuid
from typing import Any

import sqlalchemy as sa


def lookup(engine: sa.Engine, app_id: str, key: str) -> tuple[str, dict[str, Any]] | None:
    """(request hash, stored response) of an earlier request with this key, if any."""
    with engine.connect() as conn:
        row = conn.execute(
            sa.text(
                "SELECT request_hash, response FROM api_idempotency_keys"
                " WHERE app_id = :app AND key = :key"
            ),
            {"app": app_id, "key": key},
        ).one_or_none()
    return None if row is None else (str(row[0]), dict(row[1]))


def remember(
    engine: sa.Engine,
    app_id: str,
    key: str,
    request_hash: str,
    export_id: uuid.UUID,
    response: dict[str, Any],
) -> tuple[str, dict[str, Any]]:
    """Store the response for ``key``; a concurrent winner's entry is returned instead."""
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO api_idempotency_keys (app_id, key, request_hash, export_id, response)"
                " VALUES (:app, :key, :hash, :id, CAST(:resp AS jsonb))"
                " ON CONFLICT (app_id, key) DO NOTHING"
            ),
            {
                "app": app_id,
                "key": key,
                "hash": request_hash,
                "id": export_id,
                "resp": json.dumps(response),
            },
        )
    found = lookup(engine, app_id, key)
    assert found is not None
    return found
