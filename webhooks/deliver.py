"""Send due webhook deliveries, signed as the Standard Webhooks spec says.

Each attempt POSTs the delivery's JSON body with ``webhook-id`` (the delivery id, the same on
every attempt: receivers deduplicate by it), ``webhook-timestamp`` (seconds, this attempt) and
``webhook-signature`` (``v1,<base64 HMAC-SHA256 of "id.timestamp.body">``, one per live
secret, space separated). A 2xx answer delivers it; anything else (another status, a redirect,
a timeout, a refused address) is a failed attempt, retried after ``retry_delay`` until
``webhook_max_attempts`` is spent: at least once, never lost (see ``db.webhooks.claim_due``).
"""

from __future__ import annotations

import json
import logging
import random
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx
import sqlalchemy as sa
from standardwebhooks import Webhook

from core.errors import InvalidRequest
from core.settings import Settings
from db import webhooks as repo
from db.webhooks import Claimed
from webhooks.urls import check_url

log = logging.getLogger(__name__)

USER_AGENT = "exportflow-webhooks/1"
_PARALLEL = 8
"""Attempts in flight at once within one ``deliver_due`` call."""
_BODY_PEEK = 512
"""Bytes of a failed answer kept in ``last_error`` (enough for an error message)."""


@dataclass(frozen=True)
class Attempt:
    """What one attempt did: the delivery, the HTTP status (None: no answer), the outcome."""

    delivery_id: str
    status: int | None
    delivered: bool
    error: str | None
    retry_in_s: float | None
    """Seconds until the next attempt; None when delivered or given up."""


def sign(secrets: tuple[str, ...], delivery_id: str, when: datetime, body: str) -> str:
    """The ``webhook-signature`` header: one ``v1,...`` signature per secret."""
    return " ".join(Webhook(s).sign(delivery_id, when, body) for s in secrets)


def retry_delay(attempts: int, settings: Settings, retry_after_s: float | None = None) -> float:
    """Seconds before attempt ``attempts + 1``: base x 2^(attempts-1), capped, +0-10% jitter.

    A ``Retry-After`` from the receiver (429, 503) is honoured when longer, within the cap.
    """
    delay = min(
        settings.webhook_retry_max_s, settings.webhook_retry_base_s * 2.0 ** max(attempts - 1, 0)
    )
    if retry_after_s is not None:
        delay = min(settings.webhook_retry_max_s, max(delay, retry_after_s))
    return delay * (1 + random.random() / 10)


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds the receiver asked to wait (``Retry-After``: seconds or an HTTP date)."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        return max((parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds(), 0.0)
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class _Answer:
    status: int
    text: str
    retry_after_s: float | None


def _post(client: httpx.Client, claimed: Claimed, settings: Settings) -> _Answer:
    delivery = claimed.delivery
    check_url(claimed.url, allow_private=settings.webhook_allow_private_urls)
    body = json.dumps(delivery.payload, separators=(",", ":"), ensure_ascii=False)
    now = datetime.now(UTC)
    headers = {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": delivery.id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": sign(claimed.secrets, delivery.id, now, body),
    }
    with client.stream("POST", claimed.url, content=body.encode(), headers=headers) as response:
        peek = b""
        for chunk in response.iter_bytes():  # the start of the answer only
            peek += chunk
            if len(peek) >= _BODY_PEEK:
                break
        text = peek[:_BODY_PEEK].decode("utf-8", "replace").strip()
        return _Answer(response.status_code, text, _retry_after(response))


def _attempt(engine: sa.Engine, client: httpx.Client, claimed: Claimed, s: Settings) -> Attempt:
    delivery = claimed.delivery
    status: int | None = None
    retry_after: float | None = None
    try:
        answer = _post(client, claimed, s)
        status, retry_after = answer.status, answer.retry_after_s
        if 200 <= status < 300:
            repo.record_delivered(engine, delivery.id, status)
            return Attempt(delivery.id, status, True, None, None)
        error = f"HTTP {status}"
        if 300 <= status < 400:
            error += " (redirects are not followed)"
        if answer.text:
            error += f": {answer.text}"
    except InvalidRequest as exc:
        error = exc.message
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    retry = (
        retry_delay(delivery.attempts, s, retry_after)
        if delivery.attempts < s.webhook_max_attempts
        else None
    )
    repo.record_failed_attempt(engine, delivery.id, status, error, retry)
    log.info("webhook %s attempt %s failed: %s", delivery.id, delivery.attempts, error)
    return Attempt(delivery.id, status, False, error, retry)


def deliver_due(
    engine: sa.Engine,
    settings: Settings,
    limit: int = 100,
    *,
    export_id: uuid.UUID | None = None,
    delivery_id: str | None = None,
) -> list[Attempt]:
    """Make one attempt at each of up to ``limit`` due deliveries; return what happened.

    ``export_id`` / ``delivery_id`` narrow it to one export's or one delivery's (the pipeline
    sends its own right away; the maintenance flow sends everything due).
    """
    claimed = repo.claim_due(
        engine,
        limit,
        lease_s=settings.webhook_timeout_s + 60,
        export_id=export_id,
        delivery_id=delivery_id,
    )
    if not claimed:
        return []
    timeout = httpx.Timeout(settings.webhook_timeout_s)
    with (
        httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client,
        ThreadPoolExecutor(min(_PARALLEL, len(claimed)), "webhook") as pool,
    ):  # one slow receiver does not hold up the others
        return list(pool.map(lambda c: _attempt(engine, client, c, settings), claimed))
