"""Download tokens: one per export, derived with HMAC from a secret every API process shares.

The token is ``HMAC(secret, export id)`` so the API can show it again in ``result.url``; the
job row keeps only its SHA-256, which the download checks (and DELETE removes with the row).
The secret is created once in ``api_secrets``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from functools import lru_cache

import sqlalchemy as sa

from api.auth import hash_token


@lru_cache(maxsize=4)
def _secret(engine: sa.Engine) -> bytes:
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO api_secrets (name, value) VALUES ('download_token', :v)"
                " ON CONFLICT (name) DO NOTHING"
            ),
            {"v": secrets.token_hex(32)},
        )
        value = conn.execute(
            sa.text("SELECT value FROM api_secrets WHERE name = 'download_token'")
        ).scalar_one()
    return bytes.fromhex(value)


def download_token(engine: sa.Engine, export_id: uuid.UUID) -> str:
    return hmac.new(_secret(engine), str(export_id).encode(), hashlib.sha256).hexdigest()


def token_hash(engine: sa.Engine, export_id: uuid.UUID) -> str:
    return hash_token(download_token(engine, export_id))


def matches(stored_hash: str | None, token: str) -> bool:
    return stored_hash is not None and hmac.compare_digest(stored_hash, hash_token(token))
