"""``/v1/audit``: the tenant's own audit events (create, download, delete, erase, expire)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from api.deps import EngineDep, ReaderDep, SettingsDep
from api.errors import ApiError, responses
from db import audit
from db.audit import Action

router = APIRouter(prefix="/v1/audit", tags=["audit"])


class AuditEvent(BaseModel):
    """One recorded action on an export."""

    id: int
    at: datetime
    action: str = Field(description="create, download, delete, erase or expire.")
    export_id: str | None = None
    actor: str | None = Field(None, description="API key id, Prefect user, CLI user, ...")
    actor_kind: str | None = None
    channel: str | None = None
    ip: str | None = None
    user_agent: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)


class AuditList(BaseModel):
    object: Literal["list"] = "list"
    data_ref: Literal["events"] = "events"
    events: list[AuditEvent]
    total: int


@router.get(
    "", response_model=AuditList, summary="List audit events", responses=responses(400, 401, 403)
)
def list_audit(
    key: ReaderDep,
    engine: EngineDep,
    settings: SettingsDep,
    limit: Annotated[int, Query(ge=1, description="Page size (at most max_page_limit).")] = 50,
    page: Annotated[int, Query(ge=1, le=100_000, description="1-based page number.")] = 1,
    action: Annotated[Action | None, Query(description="Only this action.")] = None,
    export_id: Annotated[uuid.UUID | None, Query(description="Only this export's events.")] = None,
) -> AuditList:
    """This tenant's audit events, newest first."""
    if limit > settings.max_page_limit:
        raise ApiError(
            400,
            "invalid_limit",
            f"limit {limit} is too large; at most {settings.max_page_limit}",
            details={"max": settings.max_page_limit},
        )
    events, total = audit.list_events(
        engine,
        tenant=key.tenant,
        export_id=export_id,
        action=action,
        limit=limit,
        offset=(page - 1) * limit,
    )
    return AuditList(
        events=[
            AuditEvent(
                **{k: v for k, v in e.__dict__.items() if k not in ("tenant", "export_id")},
                export_id=str(e.export_id) if e.export_id else None,
            )
            for e in events
        ],
        total=total,
    )
