"""Download links: tokens signed with itsdangerous, carrying the export id and their own expiry.

A token is minted whenever the API shows ``result.url`` (and for the Prefect UI's link
artifact, which is why this lives below the API and the flows); it is valid for
``EXPORTFLOW_DOWNLOAD_TOKEN_TTL_S`` and never past the file's own ``expires_at``. The signing
key is created once in ``api_secrets`` and shared by every API process. Nothing is stored per
token, so reading an export never writes to the database.
"""

from __future__ import annotations

import secrets
import time
import uuid
from datetime import datetime
from functools import lru_cache

import sqlalchemy as sa
from itsdangerous import BadSignature, URLSafeSerializer

from core.settings import Settings

_SALT = "exportflow-download"


@lru_cache(maxsize=4)
def _serializer(engine: sa.Engine) -> URLSafeSerializer:
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
    return URLSafeSerializer(value, salt=_SALT)


def mint(engine: sa.Engine, export_id: uuid.UUID, ttl_s: int, not_after: datetime | None) -> str:
    """A token for ``export_id`` valid ``ttl_s`` seconds, and never past ``not_after``."""
    expires = time.time() + ttl_s
    if not_after is not None:
        expires = min(expires, not_after.timestamp())
    return str(_serializer(engine).dumps({"e": str(export_id), "x": int(expires)}))


class TokenError(Exception):
    """The token is not one of ours, is for another export, or has expired."""


def verify(engine: sa.Engine, export_id: str, token: str) -> None:
    """Raise ``TokenError`` unless ``token`` is a current token for ``export_id``."""
    try:
        payload = _serializer(engine).loads(token)
    except BadSignature:
        raise TokenError("invalid download token") from None
    if not isinstance(payload, dict) or payload.get("e") != str(export_id):
        raise TokenError("invalid download token")
    if float(payload.get("x", 0)) < time.time():
        raise TokenError("this download link has expired; get the export again for a new link")


def public_base_url(settings: Settings) -> str:
    """Where clients reach the API: ``public_url``, else ``http://{api_host}:{api_port}``."""
    return (settings.public_url or f"http://{settings.api_host}:{settings.api_port}").rstrip("/")


def download_url(
    engine: sa.Engine,
    base: str,
    export_id: uuid.UUID,
    settings: Settings,
    not_after: datetime | None,
) -> str:
    """The API's download URL of an export, with a fresh token (works from a browser)."""
    token = mint(engine, export_id, settings.download_token_ttl_s, not_after)
    return f"{base.rstrip('/')}/v1/exports/{export_id}/download?token={token}"
