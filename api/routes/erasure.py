"""Erasure: every export a requester created, or every file that can hold a customer's data.

``DELETE /v1/requesters/{app_id}/exports`` (seed 002's ``DELETE /ccpa/users/:userId``) and
``DELETE /v1/customers/{customer_id}/exports`` (a data-subject request). Both act on the
caller's tenant only, need ``exports:write``, answer with the report of what was removed and
are recorded in the audit trail. The work is ``storage.removal``'s (shared with the CLI).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, Field

from api.deps import EngineDep, LauncherDep, SettingsDep, WriterDep
from api.errors import ApiError, responses
from api.origin import origin
from storage.removal import Report, erase_customer, erase_requester

router = APIRouter(tags=["erasure"])


class RemovedExport(BaseModel):
    export_id: str
    exported_object: str
    status: str = Field(description="The export's status before the erasure.")
    location: str | None = Field(None, description="Where its file was.")
    file_removed: bool = Field(description="A file was there and is verified gone.")
    error: str | None = Field(None, description="Why this one could not be removed (retry).")


class ErasureReport(BaseModel):
    """What the erasure removed."""

    object: str = "erasure"
    at: str
    exports: int = Field(description="Exports erased.")
    files_removed: int
    failed: int = Field(description="Exports whose file could not be removed (kept; retry).")
    removed: list[RemovedExport]
    requester: str | None = None
    customer_id: str | None = None
    erasure_id: str | None = None
    objects: list[str] | None = Field(
        None, description="Exported objects that can contain a customer's data."
    )


def _report(report: Report) -> ErasureReport:
    body: dict[str, Any] = report.as_dict()
    body.pop("action")
    return ErasureReport.model_validate(body)


def _failed(report: Report) -> None:
    if report.failed:
        raise ApiError(
            503,
            "erasure_incomplete",
            f"{len(report.failed)} export files could not be removed; they are kept, run the"
            " erasure again",
            details=_report(report).model_dump(mode="json"),
        )


_ID = Path(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f]+$")


@router.delete(
    "/v1/requesters/{app_id}/exports",
    response_model=ErasureReport,
    summary="Erase a requester's exports",
    responses=responses(400, 401, 403, 503),
)
def erase_requester_exports(
    app_id: Annotated[str, _ID],
    request: Request,
    key: WriterDep,
    engine: EngineDep,
    settings: SettingsDep,
    launcher: LauncherDep,
) -> ErasureReport:
    """Delete every export of this tenant that the API key (or user) ``app_id`` created:
    running ones are cancelled, files removed, rows deleted."""
    report = erase_requester(
        engine, settings, key.tenant, app_id, origin(request, key), cancel=launcher.cancel
    )
    _failed(report)
    return _report(report)


@router.delete(
    "/v1/customers/{customer_id}/exports",
    response_model=ErasureReport,
    summary="Erase exports that can hold a customer's data",
    responses=responses(400, 401, 403, 503),
)
def erase_customer_exports(
    customer_id: Annotated[str, _ID],
    request: Request,
    key: WriterDep,
    engine: EngineDep,
    settings: SettingsDep,
) -> ErasureReport:
    """Data-subject erasure: remove every file of this tenant produced before now whose
    exported object can contain the customer's data; those exports become EXPIRED."""
    report = erase_customer(engine, settings, key.tenant, customer_id, origin(request, key))
    _failed(report)
    return _report(report)
