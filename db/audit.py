"""The audit trail: who created, downloaded, deleted, erased or expired which export, when
and from where. Append-only; the only writer of ``export_audit``.

``details`` holds small facts (format, bytes, reason, counts), never a token or a URL with a
signature.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa

Action = Literal["create", "download", "delete", "erase", "expire"]
ACTIONS: tuple[Action, ...] = ("create", "download", "delete", "erase", "expire")

_COLUMNS = "id, at, tenant, action, export_id, actor, actor_kind, channel, ip, user_agent, details"


@dataclass(frozen=True)
class Event:
    id: int
    at: datetime
    tenant: str
    action: str
    export_id: uuid.UUID | None
    actor: str | None
    actor_kind: str | None
    channel: str | None
    ip: str | None
    user_agent: str | None
    details: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.__dict__,
            "at": self.at.isoformat(),
            "export_id": str(self.export_id) if self.export_id else None,
        }


@dataclass(frozen=True)
class Origin:
    """Who did it and from where: an actor (API key id, user) and its kind, the channel,
    the client address and user agent when it came over HTTP."""

    actor: str | None
    actor_kind: str | None
    channel: str
    ip: str | None = None
    user_agent: str | None = None


def record(
    engine: sa.Engine | sa.Connection,
    action: Action,
    tenant: str,
    origin: Origin,
    export_id: uuid.UUID | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Append one event (in its own transaction, or in the caller's connection)."""
    statement = sa.text(
        "INSERT INTO export_audit (tenant, action, export_id, actor, actor_kind, channel, ip,"
        " user_agent, details) VALUES (:tenant, :action, :export_id, :actor, :kind, :channel,"
        " :ip, :ua, CAST(:details AS jsonb))"
    )
    params = {
        "tenant": tenant,
        "action": action,
        "export_id": export_id,
        "actor": origin.actor,
        "kind": origin.actor_kind,
        "channel": origin.channel,
        "ip": origin.ip,
        "ua": (origin.user_agent or "")[:500] or None,
        "details": json.dumps(details or {}, default=str),
    }
    if isinstance(engine, sa.Connection):
        engine.execute(statement, params)
        return
    with engine.begin() as conn:
        conn.execute(statement, params)


def list_events(
    engine: sa.Engine,
    *,
    tenant: str | None = None,
    export_id: uuid.UUID | None = None,
    action: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Event], int]:
    """Newest first; returns (page, total matching)."""
    where = ["TRUE"]
    params: dict[str, Any] = {"limit": limit, "offset": offset}
    for name, value in (("tenant", tenant), ("export_id", export_id), ("action", action)):
        if value is not None:
            where.append(f"{name} = :{name}")
            params[name] = value
    clause = " AND ".join(where)
    with engine.connect() as conn:
        total = conn.execute(
            sa.text(f"SELECT count(*) FROM export_audit WHERE {clause}"), params
        ).scalar_one()
        rows = conn.execute(
            sa.text(
                f"SELECT {_COLUMNS} FROM export_audit WHERE {clause}"
                " ORDER BY at DESC, id DESC LIMIT :limit OFFSET :offset"
            ),
            params,
        )
        return [Event(**r._mapping) for r in rows], int(total)


def purge(engine: sa.Engine, before: datetime) -> int:
    """Delete events older than ``before`` (the audit retention)."""
    with engine.begin() as conn:
        result = conn.execute(
            sa.text("DELETE FROM export_audit WHERE at < :before"), {"before": before}
        )
    return int(result.rowcount or 0)
