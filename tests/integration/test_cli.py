"""The shell interface: a person runs an export and reads the result."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from exportflow.cli import app

pytestmark = pytest.mark.usefixtures("exports")
runner = CliRunner()


def test_export_prints_the_job_and_the_file_it_wrote() -> None:
    result = runner.invoke(
        app,
        [
            "export",
            "orders",
            "--tenant",
            "acme",
            "--fields",
            "id,status",
            "--order=-id",
            "--format",
            "json",
        ],
    )
    assert result.exit_code == 0, result.output
    lines = dict(line.split(None, 1) for line in result.output.strip().splitlines())
    assert lines["status"] == "DONE"
    assert lines["rows"] == "1,500 of 1,500"
    rows = json.loads(Path(lines["file"]).read_text())
    assert [list(r) for r in rows[:1]] == [["id", "status"]]
    assert rows[0]["id"] > rows[-1]["id"]

    shown = runner.invoke(app, ["job", lines["job"]])
    assert json.loads(shown.output)["result"]["sha256"] == lines["sha256"]
    listed = runner.invoke(app, ["jobs", "--tenant", "acme", "--limit", "1"])
    assert lines["job"] in listed.output and "DONE" in listed.output


def test_bad_request_exits_non_zero_with_the_reason() -> None:
    result = runner.invoke(app, ["export", "vouchers", "--fields", "code,secret"])
    assert result.exit_code == 2
    assert "unknown field 'secret' for voucher; allowed:" in result.output


def test_malformed_filter_json_is_rejected_before_anything_runs() -> None:
    result = runner.invoke(app, ["export", "vouchers", "--filter", "{created_at:"])
    assert result.exit_code == 2
    assert "--filter is not valid JSON" in result.output


def test_unknown_job_id_is_reported() -> None:
    result = runner.invoke(app, ["job", "00000000-0000-0000-0000-000000000000"])
    assert result.exit_code == 1
    assert "not found" in result.output


def test_export_shows_progress_lines_without_a_terminal() -> None:
    result = runner.invoke(app, ["export", "orders", "--tenant", "acme", "--fields", "id"])
    assert result.exit_code == 0, result.output
    progress = [line for line in result.stderr.splitlines() if line.startswith("order export")]
    assert progress, result.stderr
    assert progress[-1].startswith("order export for acme: 1,500 of 1,500 rows (100%), ")
    assert progress[-1].endswith("rows/s")


def test_a_tenant_without_rows_is_warned_about() -> None:
    result = runner.invoke(app, ["export", "vouchers", "--tenant", "acmee", "--fields", "code"])
    assert result.exit_code == 0, result.output
    assert "warning: tenant 'acmee' has no vouchers at all (a misspelt --tenant?)" in result.stderr
    assert "rows       0 of 0" in result.stdout
