"""The vocabulary of what exportflow tells the outside world when an export ends.

Two channels carry it: Prefect events (``exportflow.export.<kind>``, for automations) and
Standard Webhooks deliveries (``export.<...>`` event types, for a tenant's endpoints).
"""

from __future__ import annotations

from typing import Literal, get_args

from core.status import Status

ExportEventKind = Literal["done", "failed", "expired", "erased"]
"""Prefect events: ``exportflow.export.done`` / ``.failed`` / ``.expired`` / ``.erased``."""

EXPORT_EVENT_KIND_OF_STATUS: dict[Status, ExportEventKind] = {
    "DONE": "done",
    "ERROR": "failed",
    "EXPIRED": "expired",
}

WebhookEventType = Literal["export.done", "export.failed", "export.expired", "export.cancelled"]
"""What an endpoint subscribes to; the database trigger of migration 0005 enqueues these."""

WEBHOOK_EVENT_TYPES: tuple[WebhookEventType, ...] = get_args(WebhookEventType)

WEBHOOK_EVENT_TYPE_OF_STATUS: dict[Status, WebhookEventType] = {
    "DONE": "export.done",
    "ERROR": "export.failed",
    "EXPIRED": "export.expired",
    "CANCELLED": "export.cancelled",
}

WEBHOOK_TEST_EVENT = "webhook.test"
"""The event type of a delivery sent on request (``POST /v1/webhooks/{id}/test``)."""
