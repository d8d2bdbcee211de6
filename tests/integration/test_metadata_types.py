"""``metadata`` values keep their JSON type in JSON, JSONL, Parquet and XLSX; CSV stays text.

A tenant of its own gets rows whose metadata has every JSON type (and a key whose types mix);
files are read back with real readers (json, pyarrow, openpyxl, csv).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pyarrow.parquet as pq
import pytest
from openpyxl import load_workbook

from flows.exports import export_vouchers
from tests.helpers import export, read_csv

pytestmark = pytest.mark.usefixtures("exports")

TENANT = "metatypes"
METADATA = [
    {"priority": 5, "ratio": 0.5, "vip": True, "region": "NA", "mixed": 1, "obj": {"a": [1]}},
    {"priority": 2.0, "ratio": 2, "vip": False, "region": "EU", "mixed": "one", "obj": None},
    {"priority": None, "region": "APAC"},
    None,
]
"""priority: integral numbers (2.0 too) -> int; ratio: numbers -> float; vip: bool; region:
string; mixed (number + string) and obj (object) -> JSON; null values and missing keys -> null."""


@pytest.fixture(scope="module", autouse=True)
def typed_rows(engine: Any, database_url: str) -> None:
    url = database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url, autocommit=True) as pg:
        pg.execute("DELETE FROM vouchers WHERE tenant_id = %s", (TENANT,))
        pg.execute(
            "INSERT INTO tenants (id, name) VALUES (%s, %s) ON CONFLICT DO NOTHING",
            (TENANT, TENANT),
        )
        for i, meta in enumerate(METADATA):
            patch = {
                "id": f"v_meta_{i}",
                "code": f"META-{i}",
                "tenant_id": TENANT,
                "metadata": meta,
                "created_at": f"2026-01-0{i + 1}T00:00:00+00:00",
            }
            pg.execute(
                "INSERT INTO vouchers SELECT (jsonb_populate_record(v, %s::jsonb)).*"
                " FROM vouchers v WHERE tenant_id = 'demo' LIMIT 1",
                (json.dumps(patch),),
            )


EXPECTED = [
    {"priority": 5, "ratio": 0.5, "vip": True, "region": "NA", "mixed": 1, "obj": {"a": [1]}},
    {"priority": 2, "ratio": 2, "vip": False, "region": "EU", "mixed": "one", "obj": None},
    {"priority": None, "ratio": None, "vip": None, "region": "APAC", "mixed": None, "obj": None},
    {"priority": None, "ratio": None, "vip": None, "region": None, "mixed": None, "obj": None},
]
"""As JSON has it: a float column's whole number is written ``2`` (JSON has one number type)."""
KEYS = ["mixed", "obj", "priority", "ratio", "region", "vip"]


def _metadata_of(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: row[f"metadata.{k}"] for k in KEYS} for row in rows]


def _same(got: list[dict[str, Any]]) -> None:
    assert got == EXPECTED
    for row, want in zip(got, EXPECTED, strict=True):  # 5 == 5.0 and 1 == True in Python
        assert [type(row[k]) for k in KEYS] == [type(want[k]) for k in KEYS]


def test_json_keeps_each_metadata_type() -> None:
    job = export(export_vouchers, tenant=TENANT, fields=["code", "metadata"], format="json")
    rows = json.loads(Path(job["result"]["location"]).read_text())
    _same(_metadata_of(rows))
    types = {c["name"]: c["type"] for c in job["result"]["columns"]}
    assert types == {
        "code": "string",
        "metadata.mixed": "json",
        "metadata.obj": "json",
        "metadata.priority": "int",
        "metadata.ratio": "float",
        "metadata.region": "string",
        "metadata.vip": "bool",
    }


def test_jsonl_keeps_types_of_explicitly_selected_keys() -> None:
    job = export(
        export_vouchers,
        tenant=TENANT,
        fields=["code", *(f"metadata.{k}" for k in KEYS)],
        format="jsonl",
    )
    text = Path(job["result"]["location"]).read_text()
    _same(_metadata_of([json.loads(line) for line in text.splitlines()]))


def test_parquet_columns_are_typed_when_every_value_is() -> None:
    job = export(export_vouchers, tenant=TENANT, fields=["code", "metadata"], format="parquet")
    table = pq.read_table(job["result"]["location"])
    schema = {f.name: str(f.type) for f in table.schema}
    assert schema["metadata.priority"] == "int64"
    assert schema["metadata.ratio"] == "double"
    assert schema["metadata.vip"] == "bool"
    assert schema["metadata.region"] == "string"
    assert table.column("metadata.priority").to_pylist() == [5, 2, None, None]
    assert table.column("metadata.ratio").to_pylist() == [0.5, 2.0, None, None]
    # mixed and object values: a JSON text column (each value as JSON)
    assert table.column("metadata.mixed").to_pylist() == ["1", '"one"', None, None]
    assert table.column("metadata.obj").to_pylist() == ['{"a": [1]}', "null", None, None]


def test_xlsx_cells_hold_numbers_and_booleans() -> None:
    job = export(
        export_vouchers,
        tenant=TENANT,
        fields=["code", "metadata.priority", "metadata.ratio", "metadata.vip", "metadata.region"],
        format="xlsx",
        header="names",
    )
    sheet = load_workbook(job["result"]["location"], read_only=True).worksheets[0]
    rows = [list(r) for r in sheet.iter_rows(values_only=True)]
    header_at = next(i for i, r in enumerate(rows) if r[0] == "code")
    assert rows[header_at + 1][1:] == [5, 0.5, True, "NA"]
    assert isinstance(rows[header_at + 1][1], int) and isinstance(rows[header_at + 1][3], bool)
    assert rows[header_at + 2][1:] == [2, 2, False, "EU"]


def test_csv_metadata_is_unchanged_text() -> None:
    job = export(export_vouchers, tenant=TENANT, fields=["code", "metadata"], format="csv")
    header, rows = read_csv(job["result"]["location"])
    got = [dict(zip(header, r, strict=True)) for r in rows]
    assert [r["metadata.priority"] for r in got] == ["5", "2.0", "", ""]
    assert [r["metadata.vip"] for r in got] == ["true", "false", "", ""]
    assert got[0]["metadata.obj"] == '{"a": [1]}'


def test_metadata_filters_still_work_on_typed_columns() -> None:
    job = export(
        export_vouchers,
        tenant=TENANT,
        fields=["code", "metadata.priority"],
        filters={"metadata.region": {"conditions": {"$in": ["NA", "EU"]}}},
        format="json",
    )
    rows = json.loads(Path(job["result"]["location"]).read_text())
    assert rows == [
        {"code": "META-0", "metadata.priority": 5},
        {"code": "META-1", "metadata.priority": 2},
    ]
