"""``/v1/webhooks``: a tenant's signed-webhook endpoints and their deliveries.

Create (the secret is returned once), list, get, delete, rotate the secret, send a test
event, list deliveries with their outcome, re-send one. Reads need ``exports:read``, changes
``exports:write``; another tenant's endpoint is a 404.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from api.deps import EngineDep, ReaderDep, SettingsDep, WriterDep
from api.errors import ApiError, responses
from core.errors import NotFound
from core.events import WEBHOOK_EVENT_TYPES, WEBHOOK_TEST_EVENT, WebhookEventType
from db import webhooks as repo
from webhooks import check_url, deliver_due

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])


class WebhookCreate(BaseModel):
    """Body of ``POST /v1/webhooks``."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        max_length=2000, description="Where deliveries are POSTed (a public http(s) URL)."
    )
    event_types: list[WebhookEventType] = Field(
        default_factory=lambda: list(WEBHOOK_EVENT_TYPES),
        min_length=1,
        description="Events to deliver; default all: " + ", ".join(WEBHOOK_EVENT_TYPES) + ".",
    )
    description: str | None = Field(None, max_length=500, description="A note for people.")


class WebhookRotate(BaseModel):
    """Body of ``POST /v1/webhooks/{id}/rotate-secret``."""

    model_config = ConfigDict(extra="forbid")

    keep_previous_s: int = Field(
        86_400,
        ge=0,
        le=7 * 86_400,
        description="Seconds deliveries also carry a signature made with the old secret, so "
        "receivers can switch without a gap; 0 = the old secret stops at once.",
    )


class WebhookEndpoint(BaseModel):
    """A registered endpoint (its secret is shown only when created or rotated)."""

    id: str
    object: Literal["webhook_endpoint"] = "webhook_endpoint"
    url: str
    event_types: list[str]
    description: str | None = None
    created_at: datetime
    previous_secret_until: datetime | None = Field(
        None, description="Until when deliveries are also signed with the previous secret."
    )


class WebhookEndpointWithSecret(WebhookEndpoint):
    secret: str = Field(description="`whsec_...`: verify signatures with it; shown only now.")


class WebhookList(BaseModel):
    object: Literal["list"] = "list"
    data_ref: Literal["webhooks"] = "webhooks"
    webhooks: list[WebhookEndpoint]
    total: int


class WebhookDelivery(BaseModel):
    """One message to one endpoint; ``id`` is its ``webhook-id`` header on every attempt."""

    id: str
    object: Literal["webhook_delivery"] = "webhook_delivery"
    endpoint_id: str
    event_type: str
    export_id: str | None
    outcome: Literal["pending", "delivered", "failed"] = Field(
        description="delivered (2xx), failed (given up) or pending (next_attempt_at)."
    )
    attempts: int
    last_status: int | None = Field(None, description="HTTP status of the last attempt.")
    last_error: str | None = None
    created_at: datetime
    last_attempt_at: datetime | None = None
    next_attempt_at: datetime | None = Field(None, description="Set while pending.")
    delivered_at: datetime | None = None
    failed_at: datetime | None = None
    payload: dict[str, Any] = Field(description="The body, as signed and sent.")


class WebhookDeliveryList(BaseModel):
    object: Literal["list"] = "list"
    data_ref: Literal["deliveries"] = "deliveries"
    deliveries: list[WebhookDelivery]
    total: int


def _endpoint(e: repo.Endpoint) -> WebhookEndpoint:
    return WebhookEndpoint(
        id=str(e.id),
        url=e.url,
        event_types=list(e.event_types),
        description=e.description,
        created_at=e.created_at,
        previous_secret_until=e.previous_secret_until,
    )


def _with_secret(e: repo.Endpoint, secret: str) -> WebhookEndpointWithSecret:
    return WebhookEndpointWithSecret(**_endpoint(e).model_dump(), secret=secret)


def _delivery(d: repo.Delivery) -> WebhookDelivery:
    return WebhookDelivery(
        id=d.id,
        endpoint_id=str(d.endpoint_id),
        event_type=d.event_type,
        export_id=str(d.export_id) if d.export_id else None,
        outcome=d.outcome,
        attempts=d.attempts,
        last_status=d.last_status,
        last_error=d.last_error,
        created_at=d.created_at,
        last_attempt_at=d.last_attempt_at,
        next_attempt_at=d.next_attempt_at if d.outcome == "pending" else None,
        delivered_at=d.delivered_at,
        failed_at=d.failed_at,
        payload=d.payload,
    )


def _not_found(what: str, key: object) -> ApiError:
    return ApiError(404, "not_found", f"{what} {key} not found")


def _get(engine: EngineDep, endpoint_id: str, tenant: str) -> repo.Endpoint:
    try:
        return repo.get_endpoint(engine, endpoint_id, tenant)
    except NotFound:
        raise _not_found("webhook endpoint", endpoint_id) from None


@router.post(
    "",
    status_code=201,
    response_model=WebhookEndpointWithSecret,
    summary="Create webhook endpoint",
    responses=responses(400, 401, 403),
)
def create_webhook(
    body: WebhookCreate, key: WriterDep, engine: EngineDep, settings: SettingsDep
) -> WebhookEndpointWithSecret:
    """Register an endpoint for this tenant's export events; the response holds its secret."""
    check_url(body.url, allow_private=settings.webhook_allow_private_urls)
    endpoint, secret = repo.create_endpoint(
        engine,
        tenant=key.tenant,
        url=body.url,
        event_types=tuple(dict.fromkeys(body.event_types)),
        description=body.description,
    )
    return _with_secret(endpoint, secret)


@router.get(
    "",
    response_model=WebhookList,
    summary="List webhook endpoints",
    responses=responses(400, 401, 403),
)
def list_webhooks(key: ReaderDep, engine: EngineDep) -> WebhookList:
    """This tenant's endpoints, oldest first (without secrets)."""
    endpoints = repo.list_endpoints(engine, key.tenant)
    return WebhookList(webhooks=[_endpoint(e) for e in endpoints], total=len(endpoints))


@router.get(
    "/{endpoint_id}",
    response_model=WebhookEndpoint,
    summary="Get webhook endpoint",
    responses=responses(401, 403, 404),
)
def get_webhook(endpoint_id: str, key: ReaderDep, engine: EngineDep) -> WebhookEndpoint:
    return _endpoint(_get(engine, endpoint_id, key.tenant))


@router.delete(
    "/{endpoint_id}",
    status_code=204,
    response_class=Response,
    summary="Delete webhook endpoint",
    responses=responses(401, 403, 404),
)
def delete_webhook(endpoint_id: str, key: WriterDep, engine: EngineDep) -> Response:
    """No more deliveries to it; its pending deliveries are given up (history stays)."""
    try:
        repo.disable_endpoint(engine, endpoint_id, key.tenant)
    except NotFound:
        raise _not_found("webhook endpoint", endpoint_id) from None
    return Response(status_code=204)


@router.post(
    "/{endpoint_id}/rotate-secret",
    response_model=WebhookEndpointWithSecret,
    summary="Rotate webhook secret",
    responses=responses(400, 401, 403, 404),
)
def rotate_webhook_secret(
    endpoint_id: str,
    key: WriterDep,
    engine: EngineDep,
    body: Annotated[WebhookRotate | None, Body()] = None,
) -> WebhookEndpointWithSecret:
    """A new secret, returned once; the old one keeps signing for ``keep_previous_s``."""
    keep = (body or WebhookRotate()).keep_previous_s
    try:
        endpoint, secret = repo.rotate_secret(engine, endpoint_id, key.tenant, keep)
    except NotFound:
        raise _not_found("webhook endpoint", endpoint_id) from None
    return _with_secret(endpoint, secret)


@router.post(
    "/{endpoint_id}/test",
    response_model=WebhookDelivery,
    summary="Send a test event",
    responses=responses(401, 403, 404),
)
def test_webhook(
    endpoint_id: str, key: WriterDep, engine: EngineDep, settings: SettingsDep
) -> WebhookDelivery:
    """Send a ``webhook.test`` event now; the delivery (retried if it fails) is returned."""
    endpoint = _get(engine, endpoint_id, key.tenant)
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    payload = {
        "type": WEBHOOK_TEST_EVENT,
        "timestamp": now,
        "data": {"object": "webhook_endpoint", "id": str(endpoint.id)},
    }
    delivery = repo.enqueue(engine, endpoint, WEBHOOK_TEST_EVENT, payload)
    deliver_due(engine, settings, 1, delivery_id=delivery.id)
    return _delivery(repo.get_delivery(engine, delivery.id, key.tenant))


@router.get(
    "/{endpoint_id}/deliveries",
    response_model=WebhookDeliveryList,
    summary="List deliveries",
    responses=responses(400, 401, 403, 404),
)
def list_webhook_deliveries(
    endpoint_id: str,
    key: ReaderDep,
    engine: EngineDep,
    settings: SettingsDep,
    limit: Annotated[int, Query(ge=1, description="Page size (at most max_page_limit).")] = 10,
    page: Annotated[int, Query(ge=1, le=100_000, description="1-based page number.")] = 1,
    export_id: Annotated[uuid.UUID | None, Query(description="Only this export's.")] = None,
) -> WebhookDeliveryList:
    """The endpoint's deliveries, newest first, with their outcome."""
    if limit > settings.max_page_limit:
        raise ApiError(
            400,
            "invalid_limit",
            f"limit {limit} is too large; at most {settings.max_page_limit}",
            details={"max": settings.max_page_limit},
        )
    endpoint = _get(engine, endpoint_id, key.tenant)
    found, total = repo.list_deliveries(
        engine,
        key.tenant,
        endpoint_id=endpoint.id,
        export_id=export_id,
        limit=limit,
        offset=(page - 1) * limit,
    )
    return WebhookDeliveryList(deliveries=[_delivery(d) for d in found], total=total)


@router.post(
    "/{endpoint_id}/deliveries/{delivery_id}/retry",
    response_model=WebhookDelivery,
    summary="Re-send a delivery",
    responses=responses(401, 403, 404),
)
def retry_webhook_delivery(
    endpoint_id: str, delivery_id: str, key: WriterDep, engine: EngineDep, settings: SettingsDep
) -> WebhookDelivery:
    """Send it again now (also a delivered or given-up one), with the same ``webhook-id``."""
    endpoint = _get(engine, endpoint_id, key.tenant)
    try:
        delivery = repo.get_delivery(engine, delivery_id, key.tenant)
        if delivery.endpoint_id != endpoint.id:
            raise NotFound("not this endpoint's")
        repo.redeliver(engine, delivery_id, key.tenant)
    except NotFound:
        raise _not_found("webhook delivery", delivery_id) from None
    deliver_due(engine, settings, 1, delivery_id=delivery_id)
    return _delivery(repo.get_delivery(engine, delivery_id, key.tenant))
