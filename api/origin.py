"""Who is calling and from where, as the audit trail records it."""

from __future__ import annotations

from fastapi import Request

from api.auth import ApiKey
from db.audit import Origin


def origin(request: Request, key: ApiKey | None) -> Origin:
    """The API key (or "download token" when only a token authorised the call), the client
    address and user agent."""
    return Origin(
        actor=key.app_id if key else "download-token",
        actor_kind="api_key" if key else "token",
        channel="API",
        ip=request.client.host if request.client else None,
        user_agent=request.headers.get("user-agent"),
    )
