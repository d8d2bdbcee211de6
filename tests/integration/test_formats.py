"""Every format end to end: exported by the real flows, read back by a real reader, compared
with an independent SQL query."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import zipfile
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import openpyxl
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from core.errors import InvalidRequest
from core.settings import get_settings
from flows.exports import export_vouchers
from tests.helpers import export, read_csv, read_csv_bytes, sql_rows

pytestmark = pytest.mark.usefixtures("exports")

FIELDS = ["id", "code", "value", "redemption_count", "active", "created_at", "campaign"]
SQL = (
    "SELECT v.id, v.code, v.value, v.redemption_count, v.active, v.created_at, c.name"
    " FROM vouchers v LEFT JOIN campaigns c ON c.id = v.campaign_id"
    " WHERE v.tenant_id = 'acme' ORDER BY v.id"
)


def _neutral(value: object) -> object:
    """A text value as CSV writes it with formula neutralisation on (XLSX writes it as is)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r", "\x00"):
        return "'" + value
    return value


def _location(job: dict) -> Path:
    return Path(job["result"]["location"])


def test_jsonl_is_one_object_per_line_matching_sql(pg: psycopg.Connection) -> None:
    job = export(export_vouchers, tenant="acme", fields=FIELDS, order="id", format="jsonl")

    lines = _location(job).read_text(encoding="utf-8").splitlines()
    objects = [json.loads(line) for line in lines]
    expected = sql_rows(pg, SQL)
    assert [list(o) for o in objects[:1]] == [FIELDS]
    assert [
        (
            o["id"],
            o["code"],
            Decimal(str(o["value"])) if o["value"] is not None else None,
            o["redemption_count"],
            o["active"],
            datetime.fromisoformat(o["created_at"]),
            o["campaign"],
        )
        for o in objects
    ] == expected
    assert job["result"]["key"].endswith(".jsonl")


def test_parquet_keeps_declared_types_and_values(pg: psycopg.Connection) -> None:
    job = export(export_vouchers, tenant="acme", fields=FIELDS, order="id", format="parquet")

    table = pq.read_table(_location(job))
    schema = table.schema
    assert pa.types.is_decimal(schema.field("value").type)
    assert schema.field("value").type.scale == 2
    assert schema.field("redemption_count").type == pa.int64()
    assert schema.field("active").type == pa.bool_()
    assert schema.field("created_at").type == pa.timestamp("us", tz="UTC")
    rows = list(zip(*[table.column(name).to_pylist() for name in FIELDS], strict=True))
    assert rows == sql_rows(pg, SQL)
    frame = pq.read_table(_location(job)).to_pandas()
    assert str(frame["created_at"].dtype).endswith("UTC]")
    assert frame["active"].dtype == bool


def test_parquet_reads_typed_in_duckdb(pg: psycopg.Connection) -> None:
    import duckdb

    job = export(export_vouchers, tenant="acme", fields=FIELDS, order="id", format="parquet")

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    path = str(_location(job))
    rows = con.execute(f"DESCRIBE SELECT * FROM read_parquet('{path}')").fetchall()
    types = {row[0]: row[1] for row in rows}
    assert types["value"].startswith("DECIMAL") and types["active"] == "BOOLEAN"
    assert types["redemption_count"] == "BIGINT"
    assert types["created_at"] == "TIMESTAMP WITH TIME ZONE"
    totals = con.execute(
        f"SELECT count(*), sum(value), sum(redemption_count) FROM read_parquet('{path}')"
    ).fetchone()
    assert (
        totals
        == sql_rows(
            pg,
            "SELECT count(*), sum(value), sum(redemption_count) FROM vouchers"
            " WHERE tenant_id = 'acme'",
        )[0]
    )


def test_xlsx_cells_are_typed_styled_and_match_sql(pg: psycopg.Connection) -> None:
    job = export(export_vouchers, tenant="acme", fields=FIELDS, order="id", format="xlsx")

    wb = openpyxl.load_workbook(_location(job))
    ws = wb["Export"]
    assert wb.sheetnames == ["Export"]
    assert ws.freeze_panes == "A2"
    header = [c.value for c in ws[1]]
    assert header == ["ID", "Code", "Value", "Redemption Count", "Active", "Created At", "Campaign"]
    assert all(c.font.b and c.fill.fgColor.rgb.endswith("D9E1F2") for c in ws[1])
    expected = sql_rows(pg, SQL)
    rows = list(ws.iter_rows(min_row=2))
    assert len(rows) == len(expected) == job["result"]["row_count"]
    for cells, want in zip(rows, expected, strict=True):
        got = [c.value for c in cells]
        assert got[:2] == list(want[:2])
        assert got[2] == (float(want[2]) if want[2] is not None else None)
        assert got[3] == want[3] and isinstance(got[3], int)
        assert got[4] is want[4]
        assert abs(got[5] - want[5].astimezone(UTC).replace(tzinfo=None)) < timedelta(
            milliseconds=1
        )
        assert got[6] == want[6]
        assert cells[5].is_date
        assert all(c.data_type != "f" for c in cells)
        assert all(c.data_type == "s" for c in (cells[1], cells[6]) if c.value is not None)
    widths = [ws.column_dimensions[letter].width for letter in "ABCDEFG"]
    assert all(8 <= w <= 62 for w in widths)
    assert job["result"]["sheets"] == 1 and job["result"]["truncated_cells"] == 0


def test_xlsx_title_row_sits_above_a_frozen_header() -> None:
    job = export(
        export_vouchers, tenant="acme", fields=["code"], format="xlsx", title="Acme vouchers"
    )

    ws = openpyxl.load_workbook(_location(job))["Export"]
    assert ws["A1"].value == "Acme vouchers" and ws["A1"].font.b
    assert ws["A2"].value == "Code"
    assert ws.freeze_panes == "A3"


def test_xlsx_header_can_use_field_names() -> None:
    job = export(
        export_vouchers,
        tenant="acme",
        fields=["code", "voucher_type"],
        format="xlsx",
        header="names",
    )
    ws = openpyxl.load_workbook(_location(job))["Export"]
    assert [c.value for c in ws[1]] == ["code", "voucher_type"]


def test_csv_header_can_use_labels() -> None:
    job = export(export_vouchers, tenant="acme", fields=["code", "voucher_type"], header="labels")
    header, _ = read_csv(_location(job))
    assert header == ["Code", "Voucher Type"]


def test_pdf_repeats_the_header_on_every_page_with_footer(pg: psycopg.Connection) -> None:
    import pypdf

    job = export(
        export_vouchers, tenant="acme", fields=["code", "voucher_type", "value"], format="pdf"
    )

    reader = pypdf.PdfReader(_location(job))
    pages = [p.extract_text() for p in reader.pages]
    assert len(pages) > 1 and job["result"]["pages"] == len(pages)
    for number, text in enumerate(pages, start=1):
        assert "Code" in text and "Voucher Type" in text and "Value" in text
        assert f"Page {number}" in text
        assert "Vouchers of acme" in text and "generated" in text
    codes = [r[0] for r in sql_rows(pg, "SELECT code FROM vouchers WHERE tenant_id = 'acme'")]
    words = set("\n".join(pages).split())
    assert all(code in words for code in codes)


def test_pdf_over_the_row_cap_is_rejected_before_reading(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.helpers import run_failing

    monkeypatch.setenv("EXPORTFLOW_PDF_MAX_ROWS", "100")
    get_settings.cache_clear()

    job, exc = run_failing(export_vouchers, tenant="acme", format="pdf")

    assert isinstance(exc, InvalidRequest) and exc.key == "too_many_rows"
    assert job.status == "ERROR"
    assert "xlsx or csv" in (job.error or "") and "100" in (job.error or "")
    assert not job.progress


@pytest.mark.parametrize(
    ("fmt", "compression", "suffix"),
    [
        ("csv", "gzip", ".csv.gz"),
        ("csv", "zstd", ".csv.zst"),
        ("json", "gzip", ".json.gz"),
        ("jsonl", "zstd", ".jsonl.zst"),
        ("jsonl", "gzip", ".jsonl.gz"),
    ],
)
def test_compressed_exports_round_trip_to_the_plain_file(
    fmt: str, compression: str, suffix: str
) -> None:
    plain = export(export_vouchers, tenant="acme", fields=FIELDS, order="id", format=fmt)
    packed = export(
        export_vouchers,
        tenant="acme",
        fields=FIELDS,
        order="id",
        format=fmt,
        compression=compression,
    )

    data = _location(packed).read_bytes()
    assert packed["result"]["key"].endswith(suffix)
    assert packed["result"]["sha256"] == hashlib.sha256(data).hexdigest()
    if compression == "gzip":
        unpacked = gzip.decompress(data)
    else:
        unpacked = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)).read()
    assert unpacked == _location(plain).read_bytes()
    assert len(data) < len(unpacked)


def _verified_manifest(archive: zipfile.ZipFile) -> dict:
    manifest = json.loads(archive.read("manifest.json"))
    for entry in manifest["files"]:
        data = archive.read(entry["name"])
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]
        assert len(data) == entry["bytes"]
    assert sorted(archive.namelist()) == sorted(
        [f["name"] for f in manifest["files"]] + ["manifest.json"]
    )
    totals = manifest["totals"]
    assert totals["files"] == len(manifest["files"])
    assert totals["rows"] == sum(f["rows"] for f in manifest["files"])
    return manifest


def test_partition_by_region_packs_one_csv_per_region_with_manifest(
    pg: psycopg.Connection,
) -> None:
    job = export(
        export_vouchers,
        tenant="acme",
        fields=["id", "code", "metadata.region"],
        order="id",
        partition_by="metadata.region",
    )

    assert job["result"]["key"].endswith(".zip")
    with zipfile.ZipFile(_location(job)) as archive:
        manifest = _verified_manifest(archive)
        counts = dict(
            sql_rows(
                pg,
                "SELECT coalesce(metadata->>'region', 'null'), count(*) FROM vouchers"
                " WHERE tenant_id = 'acme' GROUP BY 1",
            )
        )
        by_value = {f["partition_value"]: f for f in manifest["files"]}
        assert {k: f["rows"] for k, f in by_value.items()} == counts
        assert by_value["NA"]["name"] == "vouchers-NA.csv"
        assert by_value["NA"]["columns"][2] == {
            "name": "metadata.region",
            "label": "Metadata: region",
            "type": "string",
        }
        header, rows = read_csv_bytes(archive.read("vouchers-NA.csv"))
    expected = sql_rows(
        pg,
        "SELECT id, code, metadata->>'region' FROM vouchers"
        " WHERE tenant_id = 'acme' AND metadata->>'region' = 'NA' ORDER BY id",
    )
    assert header == ["id", "code", "metadata.region"]
    assert rows == [[_neutral(v) for v in r] for r in expected]
    assert manifest["export_id"] == job["id"]
    assert manifest["entity"] == "voucher"
    assert manifest["parameters"]["partition_by"] == "metadata.region"
    assert manifest["totals"]["rows"] == job["result"]["row_count"]
    assert "generated_at" in manifest


def test_partition_field_is_added_and_entries_can_be_parquet_or_xlsx(
    pg: psycopg.Connection,
) -> None:
    counts = dict(
        sql_rows(
            pg,
            "SELECT voucher_type, count(*) FROM vouchers WHERE tenant_id = 'acme' GROUP BY 1",
        )
    )
    for fmt in ("parquet", "xlsx"):
        job = export(
            export_vouchers, tenant="acme", fields=["code"], format=fmt, partition_by="voucher_type"
        )
        with zipfile.ZipFile(_location(job)) as archive:
            manifest = _verified_manifest(archive)
            got = {}
            for entry in manifest["files"]:
                data = io.BytesIO(archive.read(entry["name"]))
                if fmt == "parquet":
                    table = pq.read_table(data)
                    assert table.column_names == ["code", "voucher_type"]
                    values = set(table.column("voucher_type").to_pylist())
                    n = table.num_rows
                else:
                    ws = openpyxl.load_workbook(data)["Export"]
                    values = {r[1] for r in ws.iter_rows(min_row=2, values_only=True)}
                    n = ws.max_row - 1
                assert values == {entry["partition_value"]}
                got[entry["partition_value"]] = n
        assert got == counts


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"partition_by": "nope"}, "'nope'"),
        ({"partition_by": "metadata"}, "'metadata'"),
        ({"partition_by": "code", "compression": "gzip"}, "leave out compression"),
        ({"format": "xlsx", "compression": "gzip"}, "not available for xlsx"),
        ({"format": "xlsx", "title": "bad\x07title"}, "title"),
    ],
)
def test_bad_package_or_compression_requests_fail_before_reading(
    params: dict, message: str
) -> None:
    from tests.helpers import run_failing

    job, _ = run_failing(export_vouchers, tenant="acme", **params)
    assert job.status == "ERROR"
    assert message in (job.error or "")
    assert not job.progress


EDGE_TIMES = [  # (code, start_date, expiration_date) as PostgreSQL reads them
    ("E1", "-infinity", "infinity"),
    ("E2", "4714-11-24 00:00:00+00 BC", "40000-01-01 12:34:56.789+00"),
    ("E3", "0001-12-31 23:59:59.5+00 BC", "2026-01-31 23:59:59.123456+00"),
    ("E4", None, "1899-12-31 22:36:00+00"),
]
EDGE_ISO = [  # the same, as every text format writes them
    ["-infinity", "infinity"],
    ["-4713-11-24T00:00:00.000000Z", "40000-01-01T12:34:56.789000Z"],
    ["0000-12-31T23:59:59.500000Z", "2026-01-31T23:59:59.123456Z"],
    [None, "1899-12-31T22:36:00.000000Z"],
]
EDGE_DATES = [
    ("C1", "infinity"),
    ("C2", "0044-03-15 BC"),
    ("C3", "12345-06-07"),
    ("C4", "1990-05-01"),
]


@pytest.fixture(scope="module")
def edge_tenant(database_url: str) -> str:
    """Tenant ``edge``: vouchers and customers whose timestamps and dates lie where Arrow's
    parser stops (infinities, BC, five-digit years) beside ordinary ones."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO tenants (id, name) VALUES ('edge', 'Edge') ON CONFLICT DO NOTHING"
        )
        for n, (code, start, end) in enumerate(EDGE_TIMES):
            conn.execute(
                "INSERT INTO vouchers (id, tenant_id, code, voucher_type, value, discount_type,"
                " start_date, expiration_date, created_at)"
                " VALUES (%s, 'edge', %s, 'GIFT_VOUCHER', 1, 'AMOUNT', %s, %s,"
                "         timestamptz '2024-01-01' + %s * interval '1 second')"
                " ON CONFLICT DO NOTHING",
                (f"v_edge_{code}", code, start, end, n),
            )
        for code, born in EDGE_DATES:
            conn.execute(
                "INSERT INTO customers (id, tenant_id, source_id, birthdate) VALUES"
                " (%s, 'edge', %s, %s) ON CONFLICT DO NOTHING",
                (f"c_edge_{code}", code, born),
            )
    return "edge"


EDGE_FIELDS = ["code", "start_date", "expiration_date"]


def test_infinite_bc_and_far_timestamps_export_in_every_format(
    edge_tenant: str, pg: psycopg.Connection
) -> None:
    """Each text format writes them as PostgreSQL's values (``infinity`` as PostgreSQL writes
    it, the others in ISO 8601); Parquet holds the exact microseconds (DuckDB reads the
    infinities back as its own); XLSX makes a text cell of what Excel cannot show as a date."""
    import duckdb

    header, rows = read_csv(
        _location(export(export_vouchers, edge_tenant, fields=EDGE_FIELDS, format="csv"))
    )
    assert header == EDGE_FIELDS
    codes = [code for code, *_ in EDGE_TIMES]
    assert rows == [[c, *(v or "" for v in iso)] for c, iso in zip(codes, EDGE_ISO, strict=True)]

    job = export(export_vouchers, edge_tenant, fields=EDGE_FIELDS, format="jsonl")
    lines = [json.loads(line) for line in _location(job).read_text().splitlines()]
    assert [[d["start_date"], d["expiration_date"]] for d in lines] == EDGE_ISO

    path = _location(export(export_vouchers, edge_tenant, fields=EDGE_FIELDS, format="parquet"))
    stored = pq.read_table(path)
    micros = [stored.column(f).cast(pa.int64()).to_pylist() for f in EDGE_FIELDS[1:]]
    exact = sql_rows(  # PostgreSQL's own microseconds of the finite ones
        pg,
        "SELECT "
        + ", ".join(
            f"CASE WHEN isfinite({f}) THEN (extract(epoch FROM {f}) * 1e6)::int8"
            f" WHEN {f} > 'epoch' THEN 9223372036854775807"
            f" WHEN {f} < 'epoch' THEN -9223372036854775807 END"
            for f in EDGE_FIELDS[1:]
        )
        + " FROM vouchers WHERE tenant_id = 'edge' ORDER BY created_at",
    )
    assert [list(r) for r in zip(*micros, strict=True)] == [list(r) for r in exact]
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    assert con.execute(
        f"SELECT isinf(start_date), isinf(expiration_date) FROM read_parquet('{path}') LIMIT 1"
    ).fetchone() == (True, True)

    job = export(export_vouchers, edge_tenant, fields=EDGE_FIELDS, format="xlsx")
    sheet = openpyxl.load_workbook(_location(job), read_only=True).active
    values = [list(r) for r in sheet.iter_rows(min_row=2, values_only=True)]
    assert values[0] == ["E1", "-infinity", "infinity"]
    assert values[1] == ["E2", *EDGE_ISO[1]]  # Excel dates end in 9999 and start in 1900
    assert values[2][1] == EDGE_ISO[2][0]
    assert values[2][2] == datetime(2026, 1, 31, 23, 59, 59, 123000)  # openpyxl reads ms
    assert values[3][1:] == [None, EDGE_ISO[3][1]]  # before 1900-03-01: Excel's serials are off


def test_infinite_bc_and_far_dates_export_as_postgres_wrote_them(edge_tenant: str) -> None:
    from flows.exports import export_customers

    fields = ["source_id", "birthdate"]
    expected = [
        ["C1", "infinity"],
        ["C2", "-0043-03-15"],
        ["C3", "12345-06-07"],
        ["C4", "1990-05-01"],
    ]
    job = export(export_customers, edge_tenant, fields=fields, order="source_id", format="csv")
    assert read_csv(_location(job))[1] == expected
    job = export(export_customers, edge_tenant, fields=fields, order="source_id", format="json")
    assert [
        [r["source_id"], r["birthdate"]] for r in json.loads(_location(job).read_text())
    ] == expected
    job = export(export_customers, edge_tenant, fields=fields, order="source_id", format="parquet")
    days = pq.read_table(_location(job)).column("birthdate").cast(pa.int32()).to_pylist()
    assert days[0] == 2**31 - 1 and days[3] == (datetime(1990, 5, 1) - datetime(1970, 1, 1)).days
