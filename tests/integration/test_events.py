"""Prefect events of finished exports, read back from the Prefect server's event store."""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from prefect import get_client
from prefect.blocks.notifications import CustomWebhookNotificationBlock
from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter
from prefect.events.schemas.automations import AutomationCore
from prefect.events.schemas.events import Event

from db.engine import get_engine
from db.jobs import get_job
from flows.exports import export_vouchers
from tasks.events import emit_export_event
from tests.helpers import export, run_failing

pytestmark = pytest.mark.usefixtures("exports")


def read_events(job_id: uuid.UUID | str, name: str) -> list[Event]:
    """The export's events of that name, once the server has stored them (safety stop)."""
    query = EventFilter(
        event=EventNameFilter(name=[name]),
        resource=EventResourceFilter(id=[f"exportflow.export.{job_id}"]),
    )
    for _ in range(600):
        with get_client(sync_client=True) as client:
            found = client.read_events(query, limit=50).events  # the server caps it at 50
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"no {name} event for export {job_id} reached the Prefect server")


def related(event: Event) -> dict[str, str]:
    return {r.role: r.id for r in event.related}


def test_done_export_emits_an_event_about_the_export_and_its_flow_run() -> None:
    job: dict[str, Any] = export(export_vouchers, fields=["code", "value"])
    (event,) = read_events(job["id"], "exportflow.export.done")
    assert event.resource.id == f"exportflow.export.{job['id']}"
    assert event.resource["exportflow.tenant"] == "demo"
    assert event.resource["exportflow.entity"] == "voucher"
    roles = related(event)
    assert roles["flow-run"] == f"prefect.flow-run.{job['flow_run_id']}"
    assert roles["tenant"] == "exportflow.tenant.demo"
    assert roles["entity"] == "exportflow.entity.voucher"
    assert roles["flow"].startswith("prefect.flow.")  # added by Prefect from the run context
    assert event.payload["row_count"] == job["result"]["row_count"]
    assert event.payload["sha256"] == job["result"]["sha256"]
    assert event.payload["status"] == "DONE"


def test_failed_export_emits_a_failed_event_with_the_error() -> None:
    job, _ = run_failing(export_vouchers, fields=["code", "no_such_field"])
    (event,) = read_events(job.id, "exportflow.export.failed")
    assert "no_such_field" in event.payload["error"]
    assert event.payload["status"] == "ERROR"
    assert event.resource["exportflow.entity"] == "voucher"


def test_expired_and_erased_events_carry_their_details() -> None:
    done = export(export_vouchers, tenant="acme", fields=["code"])
    job = get_job(get_engine(), done["id"])
    emit_export_event(job, "expired", reason="ttl")
    emit_export_event(job, "erased", requested_by="gdpr-ticket-7")
    (expired,) = read_events(job.id, "exportflow.export.expired")
    (erased,) = read_events(job.id, "exportflow.export.erased")
    assert expired.payload["reason"] == "ttl"
    assert erased.payload["requested_by"] == "gdpr-ticket-7"
    assert expired.resource["exportflow.tenant"] == erased.resource["exportflow.tenant"] == "acme"


@pytest.fixture
def notifications() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A local HTTP endpoint standing in for Slack: (url, JSON bodies received)."""
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/notify", received
    server.shutdown()
    server.server_close()


def test_the_readme_automation_notifies_when_an_export_fails(
    notifications: tuple[str, list[dict[str, Any]]],
) -> None:
    url, received = notifications
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    found = re.search(r"```yaml\n(name: exportflow-export-failed\n.*?)```", readme, re.S)
    assert found, "the README documents the export-failed automation"
    spec = yaml.safe_load(found.group(1))
    block = CustomWebhookNotificationBlock(
        name="ops", url=url, json_data={"subject": "{{subject}}", "body": "{{body}}"}
    )
    spec["actions"][0]["block_document_id"] = str(block.save(f"ops-{uuid.uuid4().hex[:8]}"))
    spec["name"] += f"-{uuid.uuid4().hex[:8]}"
    with get_client(sync_client=True) as client:
        automation_id = client.create_automation(AutomationCore.model_validate(spec))
    try:
        job, _ = run_failing(export_vouchers, fields=["code", "not_a_field"])
        # the server loads a new automation in the background: an event emitted before it
        # did is not matched, so the failure is told again until a notification arrives
        for _ in range(120):
            if received:
                break
            time.sleep(1)
            emit_export_event(job, "failed")
        assert received, "no notification from the automation"
        note = received[0]
        assert note["subject"] == "Export failed: voucher of demo"
        assert f"exportflow.export.{job.id}" in note["body"] and "not_a_field" in note["body"]
    finally:
        with get_client(sync_client=True) as client:
            client.delete_automation(automation_id)
