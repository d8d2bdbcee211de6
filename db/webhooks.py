"""Webhooks: the repository of a tenant's endpoints and of the delivery outbox.

Deliveries of export outcomes are enqueued by a database trigger (migration 0005) in the
transaction that sets the job's final status; this module reads them, claims due ones for a
sender (``claim_due``: ``FOR UPDATE SKIP LOCKED`` plus a lease, so concurrent senders never
take the same delivery and a crashed sender's delivery comes due again), and records outcomes.
"""

from __future__ import annotations

import base64
import json
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import sqlalchemy as sa

from core.errors import NotFound


def new_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` + base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def new_delivery_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


@dataclass(frozen=True)
class Endpoint:
    id: uuid.UUID
    tenant: str
    url: str
    event_types: tuple[str, ...]
    description: str | None
    created_at: datetime
    previous_secret_until: datetime | None


@dataclass(frozen=True)
class Delivery:
    id: str
    endpoint_id: uuid.UUID
    tenant: str
    export_id: uuid.UUID | None
    event_type: str
    payload: dict[str, Any]
    attempts: int
    next_attempt_at: datetime
    last_attempt_at: datetime | None
    last_status: int | None
    last_error: str | None
    delivered_at: datetime | None
    failed_at: datetime | None
    created_at: datetime

    @property
    def outcome(self) -> Literal["pending", "delivered", "failed"]:
        """``delivered``, ``failed`` (given up) or ``pending`` (due now or retrying later)."""
        if self.delivered_at is not None:
            return "delivered"
        return "failed" if self.failed_at is not None else "pending"


@dataclass(frozen=True)
class Claimed:
    """A delivery a sender holds for one attempt: what to send, where, signed with what."""

    delivery: Delivery
    url: str
    secrets: tuple[str, ...]
    """The endpoint's secret, then its previous one while a rotation's grace period lasts."""


_ENDPOINT = "id, tenant, url, event_types, description, created_at, previous_secret_until"
_DELIVERY = (
    "id, endpoint_id, tenant, export_id, event_type, payload, attempts, next_attempt_at,"
    " last_attempt_at, last_status, last_error, delivered_at, failed_at, created_at"
)


def _endpoint(row: sa.Row[Any]) -> Endpoint:
    m = dict(row._mapping)
    m["event_types"] = tuple(m["event_types"])
    return Endpoint(**m)


def _delivery(row: sa.Row[Any]) -> Delivery:
    return Delivery(**row._mapping)


def _missing(endpoint_id: object) -> NotFound:
    return NotFound(f"webhook endpoint {endpoint_id} not found", key="webhook_not_found")


def _uuid(value: uuid.UUID | str) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def create_endpoint(
    engine: sa.Engine,
    *,
    tenant: str,
    url: str,
    event_types: tuple[str, ...],
    description: str | None = None,
) -> tuple[Endpoint, str]:
    """Register an endpoint; returns it and its secret (shown to the caller this once)."""
    secret = new_secret()
    with engine.begin() as conn:
        row = conn.execute(
            sa.text(
                "INSERT INTO webhook_endpoints (id, tenant, url, secret, event_types, description)"
                " VALUES (:id, :tenant, :url, :secret, :types, :description)"
                f" RETURNING {_ENDPOINT}"
            ),
            {
                "id": uuid.uuid4(),
                "tenant": tenant,
                "url": url,
                "secret": secret,
                "types": list(event_types),
                "description": description,
            },
        ).one()
    return _endpoint(row), secret


def list_endpoints(engine: sa.Engine, tenant: str) -> list[Endpoint]:
    """The tenant's active endpoints, oldest first."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                f"SELECT {_ENDPOINT} FROM webhook_endpoints"
                " WHERE tenant = :tenant AND disabled_at IS NULL ORDER BY created_at, id"
            ),
            {"tenant": tenant},
        )
        return [_endpoint(r) for r in rows]


def get_endpoint(engine: sa.Engine, endpoint_id: uuid.UUID | str, tenant: str) -> Endpoint:
    """An active endpoint of the tenant, or ``NotFound`` (also for another tenant's)."""
    key = _uuid(endpoint_id)
    with engine.connect() as conn:
        row = conn.execute(
            sa.text(
                f"SELECT {_ENDPOINT} FROM webhook_endpoints"
                " WHERE id = :id AND tenant = :tenant AND disabled_at IS NULL"
            ),
            {"id": key, "tenant": tenant},
        ).one_or_none()
    if key is None or row is None:
        raise _missing(endpoint_id)
    return _endpoint(row)


def disable_endpoint(engine: sa.Engine, endpoint_id: uuid.UUID | str, tenant: str) -> None:
    """Delete an endpoint: no new deliveries; its pending ones are given up, history kept."""
    key = _uuid(endpoint_id)
    with engine.begin() as conn:
        found = conn.execute(
            sa.text(
                "UPDATE webhook_endpoints SET disabled_at = now()"
                " WHERE id = :id AND tenant = :tenant AND disabled_at IS NULL RETURNING id"
            ),
            {"id": key, "tenant": tenant},
        ).one_or_none()
        if key is None or found is None:
            raise _missing(endpoint_id)
        conn.execute(
            sa.text(
                "UPDATE webhook_outbox SET failed_at = now(), last_error = 'endpoint deleted'"
                " WHERE endpoint_id = :id AND delivered_at IS NULL AND failed_at IS NULL"
            ),
            {"id": key},
        )


def rotate_secret(
    engine: sa.Engine, endpoint_id: uuid.UUID | str, tenant: str, keep_previous_s: int
) -> tuple[Endpoint, str]:
    """A new secret for the endpoint; the old one still signs for ``keep_previous_s``."""
    key = _uuid(endpoint_id)
    secret = new_secret()
    with engine.begin() as conn:
        row = conn.execute(
            sa.text(
                "UPDATE webhook_endpoints SET previous_secret = secret, secret = :secret,"
                " previous_secret_until = now() + :keep"
                " WHERE id = :id AND tenant = :tenant AND disabled_at IS NULL"
                f" RETURNING {_ENDPOINT}"
            ),
            {
                "id": key,
                "tenant": tenant,
                "secret": secret,
                "keep": timedelta(seconds=keep_previous_s),
            },
        ).one_or_none()
    if key is None or row is None:
        raise _missing(endpoint_id)
    return _endpoint(row), secret


def list_deliveries(
    engine: sa.Engine,
    tenant: str,
    *,
    endpoint_id: uuid.UUID | None = None,
    export_id: uuid.UUID | None = None,
    limit: int = 20,
    offset: int = 0,
) -> tuple[list[Delivery], int]:
    """The tenant's deliveries, newest first; returns (page, total matching)."""
    where = ["tenant = :tenant"]
    params: dict[str, Any] = {"tenant": tenant, "limit": limit, "offset": offset}
    if endpoint_id is not None:
        where.append("endpoint_id = :endpoint")
        params["endpoint"] = endpoint_id
    if export_id is not None:
        where.append("export_id = :export")
        params["export"] = export_id
    clause = " AND ".join(where)
    with engine.connect() as conn:
        total = conn.execute(
            sa.text(f"SELECT count(*) FROM webhook_outbox WHERE {clause}"), params
        ).scalar_one()
        rows = conn.execute(
            sa.text(
                f"SELECT {_DELIVERY} FROM webhook_outbox WHERE {clause}"
                " ORDER BY created_at DESC, id DESC LIMIT :limit OFFSET :offset"
            ),
            params,
        )
        return [_delivery(r) for r in rows], int(total)


def get_delivery(engine: sa.Engine, delivery_id: str, tenant: str) -> Delivery:
    with engine.connect() as conn:
        row = conn.execute(
            sa.text(f"SELECT {_DELIVERY} FROM webhook_outbox WHERE id = :id AND tenant = :tenant"),
            {"id": delivery_id, "tenant": tenant},
        ).one_or_none()
    if row is None:
        raise NotFound(f"webhook delivery {delivery_id} not found", key="delivery_not_found")
    return _delivery(row)


def enqueue(
    engine: sa.Engine, endpoint: Endpoint, event_type: str, payload: dict[str, Any]
) -> Delivery:
    """Add one delivery outside the trigger's path (a test event sent on request)."""
    with engine.begin() as conn:
        row = conn.execute(
            sa.text(
                "INSERT INTO webhook_outbox (id, endpoint_id, tenant, event_type, payload)"
                " VALUES (:id, :endpoint, :tenant, :type, CAST(:payload AS jsonb))"
                f" RETURNING {_DELIVERY}"
            ),
            {
                "id": new_delivery_id(),
                "endpoint": endpoint.id,
                "tenant": endpoint.tenant,
                "type": event_type,
                "payload": json.dumps(payload),
            },
        ).one()
    return _delivery(row)


def redeliver(engine: sa.Engine, delivery_id: str, tenant: str) -> Delivery:
    """Make a delivery due now again (also a delivered or given-up one), fresh attempt budget."""
    with engine.begin() as conn:
        row = conn.execute(
            sa.text(
                "UPDATE webhook_outbox o SET next_attempt_at = now(), failed_at = NULL,"
                " delivered_at = NULL, attempts = 0 FROM webhook_endpoints e"
                " WHERE o.id = :id AND o.tenant = :tenant AND e.id = o.endpoint_id"
                " AND e.disabled_at IS NULL"
                f" RETURNING {', '.join('o.' + c.strip() for c in _DELIVERY.split(','))}"
            ),
            {"id": delivery_id, "tenant": tenant},
        ).one_or_none()
    if row is None:
        raise NotFound(f"webhook delivery {delivery_id} not found", key="delivery_not_found")
    return _delivery(row)


def claim_due(
    engine: sa.Engine,
    limit: int,
    lease_s: float,
    *,
    export_id: uuid.UUID | None = None,
    delivery_id: str | None = None,
) -> list[Claimed]:
    """Take up to ``limit`` due deliveries for one attempt each, oldest due first.

    Claiming counts the attempt and pushes ``next_attempt_at`` out by ``lease_s``: other
    senders skip these rows, and if this sender dies before recording an outcome they come
    due again after the lease (at least once, never lost).
    """
    where = ["o.delivered_at IS NULL", "o.failed_at IS NULL", "o.next_attempt_at <= now()"]
    params: dict[str, Any] = {"limit": limit, "lease": timedelta(seconds=lease_s)}
    if export_id is not None:
        where.append("o.export_id = :export")
        params["export"] = export_id
    if delivery_id is not None:
        where.append("o.id = :delivery")
        params["delivery"] = delivery_id
    columns = ", ".join("o." + c.strip() for c in _DELIVERY.split(","))
    with engine.begin() as conn:
        rows = conn.execute(
            sa.text(
                "WITH due AS ("
                " SELECT o.id FROM webhook_outbox o"
                f" WHERE {' AND '.join(where)}"
                " ORDER BY o.next_attempt_at LIMIT :limit FOR UPDATE SKIP LOCKED)"
                " UPDATE webhook_outbox o SET attempts = o.attempts + 1,"
                " last_attempt_at = now(), next_attempt_at = now() + :lease"
                " FROM due, webhook_endpoints e"
                " WHERE o.id = due.id AND e.id = o.endpoint_id"
                f" RETURNING {columns}, e.url, e.secret,"
                " CASE WHEN e.previous_secret_until > now() THEN e.previous_secret END"
                " AS previous_secret"
            ),
            params,
        ).all()
    claimed = []
    for row in rows:
        m = dict(row._mapping)
        url, secret, previous = m.pop("url"), m.pop("secret"), m.pop("previous_secret")
        claimed.append(
            Claimed(Delivery(**m), url, (secret, previous) if previous is not None else (secret,))
        )
    return claimed


def record_delivered(engine: sa.Engine, delivery_id: str, status: int) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE webhook_outbox SET delivered_at = now(), last_status = :status,"
                " last_error = NULL WHERE id = :id"
            ),
            {"id": delivery_id, "status": status},
        )


def record_failed_attempt(
    engine: sa.Engine,
    delivery_id: str,
    status: int | None,
    error: str,
    retry_in_s: float | None,
) -> None:
    """Record a failed attempt: due again in ``retry_in_s``, or given up when None."""
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE webhook_outbox SET last_status = :status, last_error = :error,"
                " next_attempt_at = CASE WHEN CAST(:retry AS interval) IS NULL"
                " THEN next_attempt_at ELSE now() + CAST(:retry AS interval) END,"
                " failed_at = CASE WHEN CAST(:retry AS interval) IS NULL THEN now() END"
                " WHERE id = :id"
            ),
            {
                "id": delivery_id,
                "status": status,
                "error": error[:1000],
                "retry": None if retry_in_s is None else timedelta(seconds=retry_in_s),
            },
        )
