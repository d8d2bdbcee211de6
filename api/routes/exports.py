"""``/v1/exports``: create, list, get, delete (and the SDK's download form of GET)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import JSONResponse

from api import idempotency, ratelimit
from api.deps import EngineDep, LauncherDep, OptionalCallerDep, ReaderDep, SettingsDep, WriterDep
from api.download import serve_download
from api.errors import ApiError, not_found, responses
from api.origin import origin
from api.render import base_url, export_object
from api.schemas import ExportCreate, ExportList, ExportObject
from core.errors import NotFound
from core.status import ACTIVE, PUBLIC_STATUS, STATUSES, Status
from db import audit, jobs
from db.jobs import JobStateError, Requester
from entities import get_entity
from query.plan import plan_export
from storage import Stored
from storage.blocks import storage_for_record

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/exports", tags=["exports"])

_STATUS_QUERY: dict[str, tuple[str, ...]] = {
    s: tuple(t for t in STATUSES if t == s or (s == "ERROR" and PUBLIC_STATUS[t] == "ERROR"))
    for s in STATUSES
}
"""``status=ERROR`` also finds EXPIRED and CANCELLED, as the public status shows them."""


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


@router.post(
    "",
    response_model=ExportObject,
    summary="Create export",
    responses=responses(400, 401, 403, 422, 429, 503),
)
def create_export(
    body: ExportCreate,
    request: Request,
    key: WriterDep,
    engine: EngineDep,
    settings: SettingsDep,
    launcher: LauncherDep,
    idempotency_key: Annotated[
        str | None,
        Header(max_length=255, description="Same key + same body returns the first response."),
    ] = None,
) -> Any:
    """Schedule an export; an identical active export of this tenant is returned instead."""
    body_hash = _digest(body.model_dump(exclude_none=True))
    if idempotency_key:
        seen = idempotency.lookup(engine, key.app_id, idempotency_key)
        if seen is not None:
            return _replay(seen, body_hash)
    limit = key.rate_limit or settings.rate_limit_per_window
    retry_after = ratelimit.hit(engine, key.app_id, limit, settings.rate_limit_window_s)
    if retry_after is not None:
        raise ApiError(
            429,
            "too_many_requests",
            f"at most {limit} exports per {settings.rate_limit_window_s} s for this API key",
            headers={"Retry-After": str(retry_after)},
        )
    entity = get_entity(body.exported_object)
    plan = plan_export(entity, key.tenant, body.parameters)
    new_id = uuid.uuid4()
    job, created = jobs.create_or_get_active_job(
        engine,
        tenant=key.tenant,
        exported_object=entity.name,
        format=plan.format,
        channel="API",
        parameters=plan.parameters,
        request_hash=_digest([key.tenant, entity.name, plan.parameters]),
        job_id=new_id,
        launch_grace_s=settings.launch_grace_s,
        requester=Requester(key.app_id, "api_key"),
    )
    if created:
        audit.record(
            engine,
            "create",
            key.tenant,
            origin(request, key),
            job.id,
            {"exported_object": entity.name, "format": plan.format},
        )
        try:
            run_id = launcher.launch(entity, job)
        except Exception:
            # the cause (internal URLs, driver text) goes to the API's log, not to the client
            log.exception("could not start export %s", job.id)
            jobs.fail_job(engine, job.id, "could not start the flow run; try again later")
            raise ApiError(
                503,
                "launch_failed",
                "could not start the export (the workflow server did not accept it);"
                " try again later",
            ) from None
        if run_id is not None:
            jobs.set_flow_run(engine, job.id, run_id)
    payload = export_object(engine, base_url(request, settings), job, settings).model_dump(
        mode="json"
    )
    if idempotency_key:
        stored = idempotency.remember(
            engine, key.app_id, idempotency_key, body_hash, job.id, payload
        )
        return _replay(stored, body_hash)
    return payload


def _replay(seen: tuple[str, dict[str, Any]], body_hash: str) -> JSONResponse:
    stored_hash, response = seen
    if stored_hash != body_hash:
        raise ApiError(
            422,
            "idempotency_key_reused",
            "this Idempotency-Key was used with a different request body",
        )
    return JSONResponse(response)


@router.get(
    "",
    response_model=ExportList,
    summary="List exports",
    responses=responses(400, 401, 403),
)
def list_exports(
    request: Request,
    key: ReaderDep,
    engine: EngineDep,
    settings: SettingsDep,
    limit: Annotated[int, Query(ge=1, description="Page size (at most max_page_limit).")] = 10,
    page: Annotated[int, Query(ge=1, le=100_000, description="1-based page number.")] = 1,
    order: Annotated[
        Literal["created_at", "-created_at"], Query(description="Sort by creation time.")
    ] = "-created_at",
    status: Annotated[Status | None, Query(description="Only this status.")] = None,
    exported_object: Annotated[str | None, Query(description="Only this object.")] = None,
) -> ExportList:
    """This tenant's exports, newest first."""
    if limit > settings.max_page_limit:
        raise ApiError(
            400,
            "invalid_limit",
            f"limit {limit} is too large; at most {settings.max_page_limit}",
            details={"max": settings.max_page_limit},
        )
    if exported_object is not None:
        exported_object = get_entity(exported_object).name
    page_jobs, total = jobs.list_jobs(
        engine,
        tenant=key.tenant,
        status=_STATUS_QUERY[status] if status else None,
        exported_object=exported_object,
        limit=limit,
        offset=(page - 1) * limit,
        oldest_first=order == "created_at",
    )
    base = base_url(request, settings)
    return ExportList(
        exports=[export_object(engine, base, j, settings) for j in page_jobs], total=total
    )


@router.get(
    "/{export_id}",
    response_model=ExportObject,
    summary="Get export",
    responses={
        **responses(401, 403, 404, 409),
        200: {
            "description": "The export object; with `?token=` the file itself (as Voucherify's "
            "download host serves it, so its SDKs' `download_export` works)."
        },
    },
)
def get_export(
    export_id: str,
    request: Request,
    caller: OptionalCallerDep,
    engine: EngineDep,
    settings: SettingsDep,
    token: Annotated[str | None, Query(description="Download token: return the file.")] = None,
) -> Any:
    """The export (progress while it runs; `result.url` once DONE)."""
    if token is not None:
        return serve_download(request, engine, settings, export_id, token, caller)
    if caller is None:
        raise ApiError(401, "unauthorized", "missing X-App-Id / X-App-Token headers")
    if "exports:read" not in caller.scopes:
        raise ApiError(403, "forbidden", "this API key lacks the 'exports:read' scope")
    try:
        job = jobs.get_job(engine, export_id, tenant=caller.tenant)
    except NotFound:
        raise not_found(export_id) from None
    return export_object(engine, base_url(request, settings), job, settings)


@router.delete(
    "/{export_id}",
    status_code=204,
    response_class=Response,
    summary="Delete export",
    responses=responses(401, 403, 404, 409, 503),
)
def delete_export(
    export_id: str,
    request: Request,
    key: WriterDep,
    engine: EngineDep,
    settings: SettingsDep,
    launcher: LauncherDep,
) -> Response:
    """Delete the export and its file; a running export is cancelled first."""
    try:
        job = jobs.get_job(engine, export_id, tenant=key.tenant)
    except NotFound:
        raise not_found(export_id) from None
    if job.status in ACTIVE:
        try:
            job = jobs.cancel_job(engine, job.id, "cancelled: deleted through the API")
            launcher.cancel(job)
        except JobStateError:  # it finished meanwhile
            job = jobs.get_job(engine, job.id, tenant=key.tenant)
    removed = False
    if job.result and job.result.get("location") and not job.result.get("deleted_at"):
        stored = Stored.from_result(job.result)
        try:  # 204 only once the storage verified the object is gone
            removed = storage_for_record(stored, settings).delete(stored)
        except Exception:
            log.exception("could not remove the file of export %s", job.id)
            raise ApiError(
                503,
                "storage_unavailable",
                f"the file of export {job.id} could not be removed; the export is kept,"
                " try again later",
            ) from None
    with contextlib.suppress(NotFound):  # a concurrent DELETE won
        jobs.delete_job(engine, job.id, key.tenant)
        audit.record(
            engine,
            "delete",
            key.tenant,
            origin(request, key),
            job.id,
            {"status": job.status, "file_removed": removed},
        )
    return Response(status_code=204)
