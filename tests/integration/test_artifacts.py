"""What the Prefect UI shows of an export run, read back through the Prefect client: the run's
name and tags, and its artifacts (progress, download link, result table, quality report)."""

from __future__ import annotations

import urllib.parse
import uuid
from typing import Any

import pytest
import sqlalchemy as sa
from prefect import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

from core.settings import get_settings
from db.jobs import get_job
from db.links import TokenError, verify
from flows.exports import export_orders, export_vouchers
from tests.helpers import export, run_failing

pytestmark = pytest.mark.usefixtures("exports")


def _run_and_artifacts(flow_run_id: uuid.UUID) -> tuple[Any, dict[str, Any]]:
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(flow_run_id)
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id]))
        )
    by_type: dict[str, Any] = {}
    for artifact in artifacts:
        by_type.setdefault(artifact.type, []).append(artifact)
    return run, by_type


def test_export_run_is_named_tagged_and_shows_its_artifacts(engine: sa.Engine) -> None:
    job = export(export_orders, tenant="acme", fields=["id", "status", "amount"], format="json")
    assert job["flow_run_id"]
    run, artifacts = _run_and_artifacts(uuid.UUID(job["flow_run_id"]))

    assert run.name.startswith("order-acme-")
    assert {
        "exportflow",
        "cli",
        "entity:order",
        "tenant:acme",
        f"exportflow-job:{job['id']}",
    } <= set(run.tags)

    (progress,) = artifacts["progress"]
    assert progress.key == "order-acme-progress"
    assert progress.data == 100.0
    assert f"{job['result']['row_count']:,} of {job['total']:,} rows" in progress.description

    # a link artifact is stored as markdown: [text](url)
    (link,) = [a for a in artifacts["markdown"] if a.key == "order-acme-download"]
    assert str(link.data).startswith("[Download order export, ")
    url = urllib.parse.urlparse(str(link.data).split("](", 1)[1].rstrip(")"))
    assert url.path == f"/v1/exports/{job['id']}/download"
    token = urllib.parse.parse_qs(url.query)["token"][0]
    verify(engine, job["id"], token)  # a real, current download token for this export
    with pytest.raises(TokenError):
        verify(engine, str(uuid.uuid4()), token)

    (table,) = artifacts["table"]
    assert table.key == "order-acme-result"
    rows = {row["field"]: row["value"] for row in _table_rows(table.data)}
    assert rows["rows"] == f"{job['result']['row_count']:,}"
    assert rows["sha256"] == job["result"]["sha256"]
    assert rows["bytes"].startswith(f"{job['result']['bytes']:,}")
    assert rows["columns"].startswith("3: id (string), status (string), amount (int)")
    assert "total run" in rows and "read + validate + write" in rows

    (quality,) = [a for a in artifacts["markdown"] if a.key == "order-acme-quality"]
    assert "| `status` | be_in_set | values: CREATED, PAID, CANCELED, FULFILLED | pass | 0 |" in (
        quality.data
    )
    assert "| `amount` | be_between | min: 0 | pass | 0 | " in quality.data
    assert "rows: 1,500" in quality.data and "nulls: 0" in quality.data  # observed
    assert "values: CANCELED, CREATED" in quality.data  # observed distinct values


def _table_rows(data: Any) -> list[dict[str, str]]:
    import json

    parsed = json.loads(data) if isinstance(data, str) else data
    return list(parsed)


def test_quality_report_is_kept_in_the_job_result(engine: sa.Engine) -> None:
    job = export(export_orders, tenant="demo", fields=["id", "status", "amount"])
    quality = job["result"]["quality"]
    assert quality["success"] is True
    assert quality["rows_checked"] == job["result"]["row_count"]
    by_column = {(e["kind"], e["column"]): e for e in quality["expectations"]}
    status = by_column[("in_set", "status")]
    assert status["success"] and status["unexpected_count"] == 0
    assert set(status["observed"]["values"]) <= {"CREATED", "PAID", "CANCELED", "FULFILLED"}
    amount = by_column[("between", "amount")]
    assert amount["args"] == {"min": 0}
    assert amount["observed"]["min"] >= 0 and amount["observed"]["max"] >= amount["observed"]["min"]
    assert by_column[("not_null", "id")]["observed"]["nulls"] == 0


def test_skipped_validation_says_so() -> None:
    job = export(export_vouchers, tenant="demo", validation=False)
    assert job["result"]["quality"]["success"] is None
    assert "turned off" in job["result"]["quality"]["skipped"]


def test_failed_export_leaves_an_error_artifact(
    engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EXPORTFLOW_PDF_MAX_ROWS", "10")
    get_settings.cache_clear()
    job, _ = run_failing(export_vouchers, tenant="demo", format="pdf", fields=["code"])
    assert job.status == "ERROR" and job.flow_run_id is not None
    _, artifacts = _run_and_artifacts(job.flow_run_id)
    (error,) = [a for a in artifacts["markdown"] if a.key == "voucher-demo-error"]
    assert get_job(engine, job.id).error in error.data
