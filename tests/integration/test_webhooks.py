"""Signed webhooks over real HTTP: a local receiver verifies every request with standardwebhooks.

Endpoints are managed through the API (uvicorn in a thread, flows in-process); deliveries are
enqueued by the database trigger when a job reaches its final status and sent by the
pipeline right away, or by ``deliver_due`` (what the maintenance flow runs) for retries.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from standardwebhooks import Webhook, WebhookVerificationError

from core.settings import Settings, get_settings
from db import jobs
from tasks.events import send_due_webhooks
from tests.helpers import stored_job
from webhooks import deliver_due


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    at: float
    verified: bool
    answered: int


@dataclass
class Receiver:
    """An HTTP server in a thread that verifies signatures and answers a scripted status."""

    url: str = ""
    secret: str | None = None
    script: list[int] = field(default_factory=list)
    """Statuses to answer, in order, before answering 204 to every verified request."""
    requests: list[Received] = field(default_factory=list)

    def payloads(self) -> list[dict[str, Any]]:
        return [json.loads(r.body) for r in self.requests]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            try:
                Webhook(state.secret or "whsec_AAAA").verify(body, dict(self.headers.items()))
                verified = True
            except WebhookVerificationError:
                verified = False
            with lock:
                status = (state.script.pop(0) if state.script else 204) if verified else 401
                state.requests.append(
                    Received(dict(self.headers.items()), body, time.monotonic(), verified, status)
                )
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks"
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def allow_private(monkeypatch: pytest.MonkeyPatch) -> None:
    """This box's receivers listen on 127.0.0.1: allow private webhook addresses."""
    monkeypatch.setenv("EXPORTFLOW_WEBHOOK_ALLOW_PRIVATE_URLS", "true")
    get_settings.cache_clear()


@pytest.fixture
def client(api_url: str, api_keys: dict[str, dict[str, str]]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api_url, timeout=60) as c:
        yield c
        # leave no endpoint behind for the rest of the session's exports
        for tenant in ("demo", "acme"):
            for hook in c.get("/v1/webhooks", headers=api_keys[tenant]).json()["webhooks"]:
                c.delete(f"/v1/webhooks/{hook['id']}", headers=api_keys[tenant])


def wait_for(check: Callable[[], Any], what: str, step: Callable[[], Any] | None = None) -> Any:
    """Poll ``check`` (after ``step``) until it is truthy; a safety stop, not a timing test."""
    for _ in range(1200):
        if step is not None:
            step()
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"never happened: {what}")


def register(client: httpx.Client, headers: dict[str, str], url: str, **body: Any) -> Any:
    response = client.post("/v1/webhooks", json={"url": url, **body}, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


def finish_a_job(engine: sa.Engine, tenant: str = "demo", *, fail: bool = False) -> jobs.Job:
    """A job taken to its final status through the jobs repository (the trigger enqueues)."""
    job = stored_job(tenant, parameters={"fields": ["code"]}, claimed=True)
    if fail:
        return jobs.fail_job(engine, job.id, "the disk caught fire", job.attempt)
    result = {"row_count": 3, "bytes": 42, "sha256": "ab" * 32, "content_type": "text/csv",
              "url": "/srv/secret/path.csv", "location": "/srv/secret/path.csv"}  # fmt: skip
    return jobs.finish_job(engine, job.id, job.attempt, result, job.created_at)


def fast_retries(**overrides: Any) -> Settings:
    return Settings(
        webhook_allow_private_urls=True, webhook_retry_base_s=0.5, webhook_timeout_s=10,
        **overrides,
    )  # fmt: skip


def test_finished_export_is_delivered_signed_to_the_tenants_endpoint(
    client: httpx.Client,
    api_keys: dict[str, dict[str, str]],
    receiver: Receiver,
    allow_private: None,
) -> None:
    demo = api_keys["demo"]
    hook = register(client, demo, receiver.url, description="ops")
    assert hook["object"] == "webhook_endpoint"
    assert hook["secret"].startswith("whsec_") and hook["event_types"] == [
        "export.done", "export.failed", "export.expired", "export.cancelled",
    ]  # fmt: skip
    receiver.secret = hook["secret"]
    listed = client.get("/v1/webhooks", headers=demo).json()
    assert [h["id"] for h in listed["webhooks"]] == [hook["id"]]
    assert "secret" not in listed["webhooks"][0]

    created = client.post(
        "/v1/exports",
        json={"exported_object": "voucher", "parameters": {"fields": ["code", "value"]}},
        headers=demo,
    ).json()
    # the pipeline sends the export's delivery as soon as the job is DONE
    wait_for(lambda: receiver.requests, "the export.done delivery")
    export = client.get(f"/v1/exports/{created['id']}", headers=demo).json()
    assert export["status"] == "DONE"

    (request,) = receiver.requests
    assert request.verified and request.answered == 204
    assert request.headers["webhook-id"].startswith("msg_")
    body = json.loads(request.body)
    assert body["type"] == "export.done"
    data = body["data"]
    assert data["id"] == created["id"] and data["object"] == "export"
    assert data["status"] == data["state"] == "DONE" and data["exported_object"] == "voucher"
    assert data["result"]["row_count"] == export["result"]["row_count"]
    assert data["result"]["sha256"] == export["result"]["sha256"]
    assert "url" not in data["result"]  # the storage location stays inside

    deliveries = client.get(f"/v1/webhooks/{hook['id']}/deliveries", headers=demo).json()
    assert deliveries["total"] == 1
    (delivery,) = deliveries["deliveries"]
    assert delivery["id"] == request.headers["webhook-id"]
    assert delivery["outcome"] == "delivered" and delivery["attempts"] == 1
    assert delivery["last_status"] == 204 and delivery["export_id"] == created["id"]

    other = client.get(f"/v1/webhooks/{hook['id']}/deliveries", headers=api_keys["acme"])
    assert other.status_code == 404 and other.json()["key"] == "not_found"


def test_receiver_failing_twice_gets_the_same_delivery_until_it_accepts(
    client: httpx.Client,
    api_keys: dict[str, dict[str, str]],
    receiver: Receiver,
    allow_private: None,
    engine: sa.Engine,
) -> None:
    demo = api_keys["demo"]
    hook = register(client, demo, receiver.url, event_types=["export.failed"])
    receiver.secret = hook["secret"]
    receiver.script = [500, 503]
    settings = fast_retries()

    job = finish_a_job(engine, fail=True)
    attempts = []
    wait_for(
        lambda: any(a.delivered for a in attempts),
        "delivery after two refusals",
        step=lambda: attempts.extend(deliver_due(engine, settings, export_id=job.id)),
    )

    assert [r.answered for r in receiver.requests] == [500, 503, 204]
    assert all(r.verified for r in receiver.requests)
    assert len({r.headers["webhook-id"] for r in receiver.requests}) == 1
    assert len({r.body for r in receiver.requests}) == 1
    assert receiver.payloads()[0]["data"]["error"] == "the disk caught fire"
    # exponential backoff: 0.5 s then 1 s (+ up to 10% jitter), and never sent earlier
    first, second, third = attempts
    assert 0.5 <= first.retry_in_s <= 0.55 and first.status == 500
    assert 1.0 <= second.retry_in_s <= 1.1 and second.status == 503
    assert third.delivered and third.retry_in_s is None
    times = [r.at for r in receiver.requests]
    assert times[1] - times[0] >= 0.5 * 0.99 and times[2] - times[1] >= 1.0 * 0.99

    (delivery,) = client.get(
        f"/v1/webhooks/{hook['id']}/deliveries", params={"export_id": str(job.id)}, headers=demo
    ).json()["deliveries"]
    assert delivery["outcome"] == "delivered" and delivery["attempts"] == 3
    assert delivery["last_status"] == 204 and delivery["last_error"] is None
    assert delivery["event_type"] == "export.failed"


def test_a_delivery_is_given_up_after_the_last_attempt_and_can_be_resent(
    client: httpx.Client,
    api_keys: dict[str, dict[str, str]],
    receiver: Receiver,
    allow_private: None,
    engine: sa.Engine,
) -> None:
    demo = api_keys["demo"]
    hook = register(client, demo, receiver.url, event_types=["export.done"])
    receiver.secret = hook["secret"]
    receiver.script = [500, 500]
    settings = fast_retries(webhook_max_attempts=2)
    job = finish_a_job(engine)

    attempts = []
    wait_for(
        lambda: len(attempts) == 2,
        "two failed attempts",
        step=lambda: attempts.extend(deliver_due(engine, settings, export_id=job.id)),
    )
    assert attempts[-1].retry_in_s is None
    url = f"/v1/webhooks/{hook['id']}/deliveries"
    (given_up,) = client.get(url, headers=demo).json()["deliveries"]
    assert given_up["outcome"] == "failed" and given_up["next_attempt_at"] is None
    assert given_up["last_status"] == 500 and given_up["last_error"].startswith("HTTP 500")
    assert deliver_due(engine, settings, export_id=job.id) == []  # not due any more

    resent = client.post(f"{url}/{given_up['id']}/retry", headers=demo)
    assert resent.status_code == 200, resent.text
    assert resent.json()["outcome"] == "delivered" and resent.json()["attempts"] == 1
    assert len({r.headers["webhook-id"] for r in receiver.requests}) == 1


def test_rotated_secret_signs_new_deliveries(
    client: httpx.Client,
    api_keys: dict[str, dict[str, str]],
    receiver: Receiver,
    allow_private: None,
    engine: sa.Engine,
) -> None:
    demo = api_keys["demo"]
    hook = register(client, demo, receiver.url)
    old = hook["secret"]

    rotated = client.post(
        f"/v1/webhooks/{hook['id']}/rotate-secret", json={"keep_previous_s": 0}, headers=demo
    )
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["secret"]
    assert new.startswith("whsec_") and new != old
    receiver.secret = new
    test = client.post(f"/v1/webhooks/{hook['id']}/test", headers=demo)
    assert test.status_code == 200, test.text
    assert test.json()["outcome"] == "delivered" and test.json()["event_type"] == "webhook.test"
    (request,) = receiver.requests
    assert request.verified
    with pytest.raises(WebhookVerificationError):
        Webhook(old).verify(request.body, request.headers)

    # with a grace period both secrets sign, so a receiver can switch at its own pace
    newest = client.post(f"/v1/webhooks/{hook['id']}/rotate-secret", headers=demo).json()
    assert newest["previous_secret_until"] is not None
    receiver.secret = newest["secret"]
    finish_a_job(engine)
    deliver_due(engine, fast_retries())
    last = receiver.requests[-1]
    assert last.verified and json.loads(last.body)["type"] == "export.done"
    assert len(last.headers["webhook-signature"].split(" ")) == 2
    Webhook(new).verify(last.body, last.headers)  # the previous secret still verifies


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/hook",
        "http://localhost/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.10/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "http://100.64.0.1/hook",
    ],
)
def test_private_addresses_are_refused_unless_allowed(
    client: httpx.Client, api_keys: dict[str, dict[str, str]], url: str
) -> None:
    response = client.post("/v1/webhooks", json={"url": url}, headers=api_keys["demo"])
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["key"] == "webhook_url_refused" and body["code"] == 400
    assert "EXPORTFLOW_WEBHOOK_ALLOW_PRIVATE_URLS" in body["message"]
    assert client.get("/v1/webhooks", headers=api_keys["demo"]).json()["total"] == 0


def test_an_address_turned_private_is_refused_at_delivery_too(
    client: httpx.Client,
    api_keys: dict[str, dict[str, str]],
    receiver: Receiver,
    allow_private: None,
    engine: sa.Engine,
) -> None:
    hook = register(client, api_keys["demo"], receiver.url)
    receiver.secret = hook["secret"]
    job = finish_a_job(engine)
    (attempt,) = deliver_due(engine, Settings(webhook_allow_private_urls=False), export_id=job.id)
    assert not attempt.delivered and attempt.status is None
    assert "private address" in (attempt.error or "") and attempt.retry_in_s is not None
    assert receiver.requests == []


def test_bad_requests_get_voucherify_errors(
    client: httpx.Client, api_keys: dict[str, dict[str, str]], allow_private: None
) -> None:
    demo = api_keys["demo"]
    for body, key in [
        ({"url": "ftp://example.com/x"}, "webhook_url_refused"),
        ({"url": "http://user:pw@127.0.0.1/x"}, "webhook_url_refused"),
        ({"url": "http://127.0.0.1/x", "event_types": ["export.exploded"]}, "invalid_payload"),
        ({"url": "http://127.0.0.1/x", "event_types": []}, "invalid_payload"),
    ]:
        response = client.post("/v1/webhooks", json=body, headers=demo)
        assert response.status_code == 400, response.text
        assert response.json()["key"] == key
    missing = client.delete(f"/v1/webhooks/{uuid.uuid4()}", headers=demo)
    assert missing.status_code == 404 and missing.json()["key"] == "not_found"
    read_only = client.post(
        "/v1/webhooks", json={"url": "http://127.0.0.1/x"}, headers=api_keys["demo_read"]
    )
    assert read_only.status_code == 403


def test_deleted_endpoint_gets_nothing_more(
    client: httpx.Client,
    api_keys: dict[str, dict[str, str]],
    receiver: Receiver,
    allow_private: None,
    engine: sa.Engine,
) -> None:
    demo = api_keys["demo"]
    hook = register(client, demo, receiver.url)
    job = finish_a_job(engine)  # enqueued, not sent yet
    assert client.delete(f"/v1/webhooks/{hook['id']}", headers=demo).status_code == 204
    finish_a_job(engine)
    assert deliver_due(engine, fast_retries(), export_id=job.id) == []
    assert receiver.requests == []
    assert client.get(f"/v1/webhooks/{hook['id']}", headers=demo).status_code == 404


@pytest.mark.usefixtures("exports")
def test_the_maintenance_task_sends_what_is_due(
    client: httpx.Client,
    api_keys: dict[str, dict[str, str]],
    receiver: Receiver,
    allow_private: None,
    engine: sa.Engine,
) -> None:
    hook = register(client, api_keys["acme"], receiver.url)
    receiver.secret = hook["secret"]
    finish_a_job(engine, "acme", fail=True)
    finish_a_job(engine, "acme")
    lines = send_due_webhooks()
    assert sum(" delivered (204)" in line for line in lines) >= 2, lines
    assert sorted(p["type"] for p in receiver.payloads()) == ["export.done", "export.failed"]
    assert all(r.verified for r in receiver.requests)
