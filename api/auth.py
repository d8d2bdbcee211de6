"""API keys: ``X-App-Id`` + ``X-App-Token`` -> tenant and scopes. Tokens are stored hashed.

Tokens are 256-bit random strings, so a plain SHA-256 is enough (no password stretching):
the table never holds anything that authenticates.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from core.errors import InvalidRequest
from core.tenants import check_tenant

SCOPES = ("exports:read", "exports:write")


@dataclass(frozen=True)
class ApiKey:
    app_id: str
    tenant: str
    scopes: tuple[str, ...]
    name: str | None
    rate_limit: int | None
    created_at: datetime
    revoked_at: datetime | None


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _check_scopes(scopes: tuple[str, ...]) -> tuple[str, ...]:
    bad = [s for s in scopes if s not in SCOPES]
    if bad or not scopes:
        raise InvalidRequest(f"unknown scopes {bad}; allowed: {', '.join(SCOPES)}")
    return tuple(dict.fromkeys(scopes))


def create_key(
    engine: sa.Engine,
    tenant: str,
    scopes: tuple[str, ...] = SCOPES,
    *,
    name: str | None = None,
    rate_limit: int | None = None,
    app_id: str | None = None,
    token: str | None = None,
) -> tuple[str, str]:
    """Create (or, given ``app_id``, replace) a key; return ``(app_id, app_token)``."""
    check_tenant(tenant)
    app_id = app_id or f"app_{secrets.token_hex(12)}"
    token = token or secrets.token_urlsafe(32)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO api_keys (app_id, token_hash, tenant, scopes, name, rate_limit)"
                " VALUES (:app, :hash, :tenant, :scopes, :name, :limit)"
                " ON CONFLICT (app_id) DO UPDATE SET token_hash = EXCLUDED.token_hash,"
                " tenant = EXCLUDED.tenant, scopes = EXCLUDED.scopes, name = EXCLUDED.name,"
                " rate_limit = EXCLUDED.rate_limit, revoked_at = NULL"
            ),
            {
                "app": app_id,
                "hash": hash_token(token),
                "tenant": tenant,
                "scopes": list(_check_scopes(scopes)),
                "name": name,
                "limit": rate_limit,
            },
        )
    return app_id, token


def _key(row: Any) -> ApiKey:
    m = row._mapping
    return ApiKey(
        m["app_id"],
        m["tenant"],
        tuple(m["scopes"]),
        m["name"],
        m["rate_limit"],
        m["created_at"],
        m["revoked_at"],
    )


_KEY_COLUMNS = "app_id, tenant, scopes, name, rate_limit, created_at, revoked_at"


def list_keys(engine: sa.Engine, tenant: str | None = None) -> list[ApiKey]:
    query = f"SELECT {_KEY_COLUMNS} FROM api_keys"
    params: dict[str, Any] = {}
    if tenant:
        query += " WHERE tenant = :tenant"
        params["tenant"] = tenant
    with engine.connect() as conn:
        return [_key(r) for r in conn.execute(sa.text(query + " ORDER BY created_at"), params)]


def revoke_key(engine: sa.Engine, app_id: str) -> bool:
    """Revoke a key; False if there is no such active key."""
    with engine.begin() as conn:
        hit = conn.execute(
            sa.text(
                "UPDATE api_keys SET revoked_at = now()"
                " WHERE app_id = :app AND revoked_at IS NULL RETURNING app_id"
            ),
            {"app": app_id},
        ).one_or_none()
    return hit is not None


def authenticate(engine: sa.Engine, app_id: str, token: str) -> ApiKey | None:
    """The active key for these credentials, or None."""
    with engine.connect() as conn:
        row = conn.execute(
            sa.text(
                f"SELECT {_KEY_COLUMNS}, token_hash FROM api_keys"
                " WHERE app_id = :app AND revoked_at IS NULL"
            ),
            {"app": app_id},
        ).one_or_none()
    if row is None or not hmac.compare_digest(row._mapping["token_hash"], hash_token(token)):
        return None
    return _key(row)
