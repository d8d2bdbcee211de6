"""The CLI answers at once: catalog listings and refused requests never start Prefect."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from core.names import catalog_digest
from devtools.procs import free_port
from entities import ENTITIES
from exportflow.cli import app

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()

PROBE = """
import atexit, os, sys
atexit.register(lambda: print("IMPORTED", *sorted(
    m for m in os.environ.get("PROBE_MODULES", "prefect great_expectations pandas").split()
    if m in sys.modules), file=sys.stderr))
from exportflow.cli import main
sys.argv = ["exportflow", *sys.argv[1:]]
main()
"""


def _cli(*args: str, **environ: str) -> subprocess.CompletedProcess[str]:
    """The CLI in a fresh process whose Prefect API is a closed port (any contact would fail)."""
    env = {
        **os.environ,
        **environ,
        "PYTHONPATH": str(ROOT),
        "PREFECT_API_URL": f"http://127.0.0.1:{free_port()}/api",
        "EXPORTFLOW_DATABASE_URL": f"postgresql://nobody@127.0.0.1:{free_port()}/none",
    }
    return subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,  # a safety stop, not a timing assertion
    )


def test_bad_request_is_refused_before_prefect_or_the_database() -> None:
    result = _cli("export", "vouchers", "--fields", "code,secret")
    assert result.returncode == 2, result.stderr
    assert "error: unknown field 'secret' for voucher; allowed: active," in result.stderr
    assert result.stderr.strip().splitlines()[-1] == "IMPORTED"  # no prefect, GX or pandas


def test_a_request_naming_nothing_known_is_refused_before_the_catalog_loads(
    tmp_path: Path,
) -> None:
    """The first ``export`` keeps the catalog's names under the home (``core.names``); the
    next ones refuse an unknown entity, field or sort key from them, with the catalog's own
    words, before SQLAlchemy and the catalog are imported. A good request still goes on."""
    home = {"EXPORTFLOW_HOME": str(tmp_path), "PROBE_MODULES": "sqlalchemy entities"}
    first = _cli("export", "vouchers", "--fields", "code,secret", **home)
    assert first.returncode == 2, first.stderr
    assert first.stderr.strip().splitlines()[-1] == "IMPORTED entities sqlalchemy"
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [
        f"entity-names-{catalog_digest()}.json"
    ]

    again = _cli("export", "vouchers", "--fields", "code,secret", **home)
    assert again.returncode == 2
    assert again.stderr.splitlines()[0] == first.stderr.splitlines()[0]
    assert again.stderr.strip().splitlines()[-1] == "IMPORTED"
    for args, refusal in (
        (("coupons",), "error: unknown exported_object 'coupons'; allowed: customer, order,"),
        (("orders", "--order", "-size"), "error: cannot order order exports by '-size'; allowed:"),
        (("skus", "--fields", "id,id"), "error: field 'id' is listed twice"),
    ):
        refused = _cli("export", *args, **home)
        assert refused.returncode == 2 and refused.stderr.startswith(refusal), refused.stderr
        assert refused.stderr.strip().splitlines()[-1] == "IMPORTED"

    # names it knows: on to the catalog's full check (here it refuses the filter)
    checked = _cli(
        "export", "vouchers", "--fields", "code,metadata.tier", "--filter", '{"pin": 1}', **home
    )
    assert checked.returncode == 2
    assert checked.stderr.startswith("error: cannot filter voucher exports by 'pin'")
    assert checked.stderr.strip().splitlines()[-1] == "IMPORTED entities sqlalchemy"


def test_unknown_format_shows_the_whole_reason() -> None:
    result = _cli("export", "vouchers", "--format", "xls")
    assert result.returncode == 2
    assert (
        "format: unknown format 'xls'; allowed: csv, json, jsonl, parquet, xlsx, pdf"
        in result.stderr
    )
    assert "IMPORTED\n" in result.stderr and "prefect" not in result.stderr.split("IMPORTED")[1]


def test_flags_read_as_they_act() -> None:
    result = runner.invoke(app, ["export", "--help"], terminal_width=200)
    for flag in ("--validate", "--skip-validation", "--neutralize-formulas", "--keep-formulas"):
        assert flag in result.output
    assert "--no-no" not in result.output


def test_entities_lists_every_entity_with_its_flow() -> None:
    result = runner.invoke(app, ["entities"])
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0].split() == [
        "ENTITY", "CLI", "NAME", "FLOW", "FIELDS", "DEFAULT", "ORDER", "METADATA", "CHECKS"
    ]  # fmt: skip
    for entity in ENTITIES.values():
        row = next(line for line in lines if line.split()[:1] == [entity.name])
        assert entity.flow_name in row and entity.default_order in row


def test_fields_lists_types_defaults_sort_keys_and_filters() -> None:
    result = runner.invoke(app, ["fields", "vouchers"])
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line.split() for line in result.output.splitlines() if line.strip()}
    assert rows["code"][:5] == ["code", "string", "yes", "(1)", "yes"]
    assert rows["value"][1] == "decimal"
    assert rows["created_at"][1:4] == ["timestamp", "yes", "yes"]  # sortable, filterable
    assert "default fields: code, voucher_type, value, discount_type" in result.output
    assert "campaign_ids (= campaign_id)" in result.output
    assert "metadata.<key>" in result.output


def test_fields_of_an_unknown_entity_names_the_allowed_ones() -> None:
    result = runner.invoke(app, ["fields", "coupons"])
    assert result.exit_code == 2
    assert "unknown exported_object 'coupons'; allowed: customer, order," in result.output


def test_progress_without_a_terminal_is_plain_lines_ending_with_the_total() -> None:
    import io

    from exportflow.show import ProgressView

    out = io.StringIO()
    view = ProgressView("order export for acme", out)
    assert view.rich is False  # a StringIO is no terminal
    for rows in (0, 1_000, 2_000, 3_000):
        view.update(rows, 3_000)
    view.close()
    lines = out.getvalue().splitlines()
    assert lines[0] == "order export for acme: 0 of 3,000 rows (0%), 0 rows/s"
    assert lines[-1].startswith("order export for acme: 3,000 of 3,000 rows (100%), ")
    assert len(lines) == 2  # at most one line per PLAIN_EVERY_S, plus the last


def test_progress_on_a_terminal_is_a_rich_bar_with_rate_and_eta() -> None:
    import io

    from exportflow.show import ProgressView

    out = io.StringIO()
    view = ProgressView("voucher export for demo", out, rich=True)
    view.update(0, 10_000)
    view.update(5_000, 10_000)
    view.close()
    text = out.getvalue()
    assert "voucher export for demo" in text and "5000/" in text and "50%" in text
    assert "rows/s" in text and "ETA" in text
