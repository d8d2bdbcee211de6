"""``make bench``: every export against PostgreSQL's own COPY, on the same data, in one run.

Seeds (or reuses) ``--rows`` vouchers for tenant ``bench`` and a tenth of that for tenant
``bench10`` in an embedded PostgreSQL under ``.exportflow/bench`` (apart from the demo's), starts
one Prefect server for the whole run (``prefect server start --no-services``: a temporary
server per child would add 6-10 s to every run), then times each case as a separate process
(``bench.child``), round-robin, ``--repeats`` times, and keeps the median:

* ``copy``: ``COPY (<the SELECT the export runs>) TO STDOUT (FORMAT csv, HEADER)`` into a file;
* ``pandas-naive``: ``pandas.read_sql(chunksize=10000)`` + ``to_csv``;
* ``exportflow-<format>``: the real flow and storage for every format in ``exporters.FORMATS``
  (csv also gzip'd and zstd'd), validation on; csv once with validation off; csv at 10% of N.

For each case: wall seconds (process start to exit) split into the fixed start-up cost (process
start to first row read), streaming (first row read to last row written) and the fixed finish
(store, job row, exit); rows/s and MB/s over streaming time; output bytes; peak RSS of the
process (its own ``VmHWM``); and the ratio to COPY -- of streaming time (what the targets are
about) and of whole wall time. Prints one table and
writes ``bench/results/latest.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devtools.procs import free_port, prefect_defaults, start_group, stop_group, wait_http

ROOT = Path(__file__).resolve().parent.parent
HOME = ROOT / ".exportflow" / "bench"
RESULTS = ROOT / "bench" / "results" / "latest.json"
TENANT, TENANT_TENTH = "bench", "bench10"

TARGETS = {
    "csv_stream_ratio_max": 2.0,
    "parquet_stream_ratio_max": 2.5,
    "xlsx_rows_per_s_min": 50_000,
    "peak_rss_mb_max": 500,
    "rss_growth_10pct_to_full_max": 0.10,
}


@dataclass(frozen=True)
class Case:
    """One thing to time: a child kind plus what it exports."""

    name: str
    kind: str
    format: str
    tenant: str
    rows: int
    compression: str | None = None
    validation: bool | None = None
    baseline: str = "copy"
    """The case whose time ``ratio_to_copy`` divides by."""


@dataclass
class Measured:
    """The runs of one case."""

    case: Case
    walls: list[float] = field(default_factory=list)
    startups: list[float] = field(default_factory=list)
    streams: list[float] = field(default_factory=list)
    rss_mb: list[float] = field(default_factory=list)
    bytes: int = 0


def tenth_of(rows: int) -> int:
    """Rows of the ``-10pct`` cases (at least one)."""
    return max(1, rows // 10)


def cases(rows: int, formats: list[str], compressions: dict[str, tuple[str, ...]]) -> list[Case]:
    """The cases of one run; formats not registered in ``exporters.FORMATS`` are skipped."""
    tenth = tenth_of(rows)
    out = [
        Case("copy", "copy", "csv", TENANT, rows),
        Case("copy-10pct", "copy", "csv", TENANT_TENTH, tenth, baseline="copy-10pct"),
        Case("pandas-naive", "pandas", "csv", TENANT, rows),
    ]
    for fmt in formats:
        out.append(Case(f"exportflow-{fmt}", "flow", fmt, TENANT, rows, validation=True))
        if fmt == "csv":
            for comp in ("gzip", "zstd"):
                if comp in compressions.get(fmt, ()):
                    out.append(
                        Case(f"exportflow-csv-{comp}", "flow", fmt, TENANT, rows, comp, True)
                    )
            out.append(Case("exportflow-csv-novalidate", "flow", "csv", TENANT, rows, None, False))
            out.append(
                Case(
                    "exportflow-csv-10pct",
                    "flow",
                    "csv",
                    TENANT_TENTH,
                    tenth,
                    None,
                    True,
                    baseline="copy-10pct",
                )
            )
    return out


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.system()} {platform.release()}, {os.cpu_count()} cpu ({model}), " + (
        f"Python {platform.python_version()}"
    )


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        )
    except OSError:
        return None
    return out.stdout.strip() or None


def prepare(rows: int) -> tuple[str, dict[str, Any], float]:
    """Seed both tenants (reused when already there); return the libpq URL, SQL, seed seconds."""
    from db.engine import get_engine
    from db.migrate import upgrade
    from devtools.sample import create_source_schema, seed

    engine = get_engine()
    upgrade(engine)
    create_source_schema(engine)
    started = time.perf_counter()
    seed(engine, rows, (TENANT,))
    seed(engine, tenth_of(rows), (TENANT_TENTH,))
    seed_s = time.perf_counter() - started
    url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    return url, {t: statements(engine, t) for t in (TENANT, TENANT_TENTH)}, seed_s


def statements(engine: Any, tenant: str) -> dict[str, Any]:
    """The exact SELECT a default voucher export runs, as COPY (psycopg) and as text (pandas)."""
    from entities.vouchers import VOUCHERS
    from query.plan import plan_export
    from query.sql import copy_sql, select_statement

    plan = plan_export(VOUCHERS, tenant, {})
    columns = plan.columns([])
    sql, params = copy_sql(engine.dialect, plan, columns, header=True)
    select = select_statement(plan, columns).compile(
        dialect=engine.dialect, compile_kwargs={"literal_binds": True}
    )
    return {"copy_sql": sql, "params": params, "select": str(select)}


def base_env(url: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("EXPORTFLOW_", "PREFECT_")) and k != "DATABASE_URL"
    }
    env.update(
        EXPORTFLOW_HOME=str(HOME), EXPORTFLOW_DATABASE_URL=url, PREFECT_LOGGING_LEVEL="WARNING"
    )
    env["PYTHONPATH"] = str(ROOT)
    prefect_defaults(env, HOME)
    return env


def start_prefect(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    """One Prefect API server for every child of the run (started once, in the background)."""
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    proc = start_group(
        [
            str(Path(sys.executable).parent / "prefect"),
            *("server", "start", "--host", "127.0.0.1", "--port", str(port)),
            *("--no-services", "--no-ui", "--analytics-off"),
        ],
        env,
        HOME / "prefect-server.log",
    )
    try:
        wait_http(f"{api}/health", 180, lambda: proc.poll() is None)
    except RuntimeError:
        stop_group(proc.pid)
        raise
    return proc, api


def run_once(case: Case, env: dict[str, str], sql: dict[str, Any], url: str) -> dict[str, Any]:
    """Start one child, wait for it with ``wait4``; return its report, wall and peak RSS."""
    work = HOME / "tmp"
    work.mkdir(parents=True, exist_ok=True)
    out = work / f"{case.name}.out"
    spec: dict[str, Any] = {"url": url, "out": str(out)}
    if case.kind == "copy":
        spec.update(sql=sql["copy_sql"], params=sql["params"])
    elif case.kind == "pandas":
        spec.update(select=sql["select"])
    else:
        spec.update(
            tenant=case.tenant,
            format=case.format,
            compression=case.compression,
            validation=bool(case.validation),
        )
    with tempfile.TemporaryFile() as stdout, open(HOME / "children.log", "ab") as stderr:
        started = time.time()
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.child", case.kind, json.dumps(spec)],
            cwd=ROOT,
            env=env,
            stdout=stdout,
            stderr=stderr,
        )
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.time() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        stdout.seek(0)
        text = stdout.read().decode("utf-8", "replace")
    if proc.returncode != 0:
        raise RuntimeError(f"{case.name} failed (exit {proc.returncode}); see children.log")
    report: dict[str, Any] = json.loads(text.strip().splitlines()[-1])
    location = Path(report.get("location") or out)
    location.unlink(missing_ok=True)
    out.unlink(missing_ok=True)
    first, last = report.get("first_row_at"), report.get("last_row_at")
    report.update(
        wall_s=wall,
        startup_s=(first - started) if first else None,
        stream_s=(last - first) if first and last else None,
        # The child's own VmHWM; rusage (kilobytes on Linux) includes the parent's pre-exec RSS.
        peak_rss_mb=report.get("peak_rss_mb") or usage.ru_maxrss / 1024,
        teardown_s=started + wall - report["finished_at"],
    )
    return report


def summarize(measured: dict[str, Measured]) -> list[dict[str, Any]]:
    """One result row per case: medians, rates over streaming time, ratios to the baseline."""
    rows: list[dict[str, Any]] = []
    for m in measured.values():
        c = m.case
        wall = statistics.median(m.walls)
        startup = statistics.median(m.startups) if m.startups else 0.0
        stream = max(statistics.median(m.streams) if m.streams else wall - startup, 1e-9)
        base = measured[c.baseline]
        base_wall = statistics.median(base.walls)
        base_stream = max(statistics.median(base.streams) if base.streams else base_wall, 1e-9)
        row: dict[str, Any] = {
            "name": c.name,
            "format": c.format,
            "compression": c.compression,
            "rows": c.rows,
            "wall_s": round(wall, 3),
            "wall_runs_s": [round(w, 3) for w in m.walls],
            "startup_s": round(startup, 3),
            "stream_s": round(stream, 3),
            "finish_s": round(max(wall - startup - stream, 0.0), 3),
            "rows_per_s": round(c.rows / stream),
            "mb_per_s": round(m.bytes / stream / 1e6, 1),
            "bytes": m.bytes,
            "peak_rss_mb": round(max(m.rss_mb), 1),
            "ratio_to_copy": round(stream / base_stream, 2),
            "wall_ratio_to_copy": round(wall / base_wall, 2),
            "baseline": c.baseline,
        }
        if c.validation is not None:
            row["validation"] = c.validation
        rows.append(row)
    return rows


def verdicts(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Each target with the measured value and whether it is met (None: not measured)."""
    by = {r["name"]: r for r in results}

    def check(name: str, key: str, limit: float, at_most: bool = True) -> dict[str, Any]:
        if name not in by:
            return {"case": name, "met": None}
        value = by[name][key]
        return {
            "case": name,
            key: value,
            "limit": limit,
            "met": value <= limit if at_most else value >= limit,
        }

    rss = max(r["peak_rss_mb"] for r in results if r["name"].startswith("exportflow"))
    out = {
        "csv_stream_ratio": check("exportflow-csv", "ratio_to_copy", 2.0),
        "parquet_stream_ratio": check("exportflow-parquet", "ratio_to_copy", 2.5),
        "xlsx_rows_per_s": check("exportflow-xlsx", "rows_per_s", 50_000, at_most=False),
        "peak_rss_mb": {"max_exportflow": rss, "limit": 500, "met": rss <= 500},
    }
    if "exportflow-csv" in by and "exportflow-csv-10pct" in by:
        small, full = by["exportflow-csv-10pct"]["peak_rss_mb"], by["exportflow-csv"]["peak_rss_mb"]
        growth = full / small - 1
        out["rss_growth_10pct_to_full"] = {
            "growth": round(growth, 3),
            "limit": 0.10,
            "met": growth <= 0.10,
        }
    return out


COLUMNS = [
    ("name", "{:<26}"),
    ("rows", "{:>9,}"),
    ("wall_s", "{:>7.2f}"),
    ("startup_s", "{:>7.2f}"),
    ("stream_s", "{:>7.2f}"),
    ("finish_s", "{:>7.2f}"),
    ("rows_per_s", "{:>10,}"),
    ("mb_per_s", "{:>6.1f}"),
    ("bytes", "{:>12,}"),
    ("peak_rss_mb", "{:>7.0f}"),
    ("ratio_to_copy", "{:>6.2f}"),
    ("wall_ratio_to_copy", "{:>6.2f}"),
]
HEADERS = ["case", "rows", "wall s", "start s", "strm s", "end s", "rows/s", "MB/s", "bytes"]
HEADERS += ["RSS MB"]
HEADERS += ["xCOPY", "xwall"]


def table(results: list[dict[str, Any]]) -> str:
    """The results as a fixed-width text table (also pasted into the README)."""
    widths = [len(fmt.format(0 if key != "name" else "")) for key, fmt in COLUMNS]
    pairs = enumerate(zip(HEADERS, widths, strict=True))
    lines = ["  ".join(h.rjust(w) if i else h.ljust(w) for i, (h, w) in pairs)]
    for r in results:
        lines.append("  ".join(fmt.format(r[key]) for key, fmt in COLUMNS))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=int(os.environ.get("BENCH_ROWS", 1_000_000)))
    parser.add_argument("--repeats", type=int, default=int(os.environ.get("BENCH_REPEATS", 3)))
    parser.add_argument("--only", default="", help="Comma-separated case names (default: all).")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.rows < 10 or args.repeats < 1:
        parser.error("--rows must be at least 10 and --repeats at least 1")
    began = time.perf_counter()

    HOME.mkdir(parents=True, exist_ok=True)
    os.environ["EXPORTFLOW_HOME"] = str(HOME)
    for name in ("DATABASE_URL", "EXPORTFLOW_DATABASE_URL"):
        os.environ.pop(name, None)
    from core.formats import FORMATS
    from core.settings import get_settings

    print(f"seeding {args.rows:,} + {tenth_of(args.rows):,} vouchers under {HOME} ...", flush=True)
    url, sql, seed_s = prepare(args.rows)
    print(f"  data ready in {seed_s:.1f}s", flush=True)
    formats: list[str] = [f for f in ("csv", "json", "jsonl", "parquet", "xlsx") if f in FORMATS]
    formats += [f for f in FORMATS if f not in formats]
    # Formats with a row cap (PDF: 10,000) refuse an export of this size by design.
    settings = get_settings()
    caps = {
        f: getattr(settings, s.max_rows_setting) for f, s in FORMATS.items() if s.max_rows_setting
    }
    capped = [f for f in formats if caps.get(f, args.rows) < args.rows]
    if capped:
        print(f"  skipping {', '.join(capped)}: row cap below {args.rows:,} rows", flush=True)
    formats = [f for f in formats if f not in capped]
    compressions = {name: tuple(fmt.compressions) for name, fmt in FORMATS.items()}
    todo = cases(args.rows, formats, compressions)
    if args.only:
        wanted = set(args.only.split(","))
        wanted |= {c.baseline for c in todo if c.name in wanted}
        todo = [c for c in todo if c.name in wanted]

    env = base_env(url)
    started = time.perf_counter()
    server, api = start_prefect(env)
    env["PREFECT_API_URL"] = api
    server_s = time.perf_counter() - started
    print(f"  prefect server up in {server_s:.1f}s at {api}", flush=True)
    measured = {c.name: Measured(c) for c in todo}
    try:
        for repeat in range(args.repeats):
            for case in todo:
                report = run_once(case, env, sql[case.tenant], url)
                m = measured[case.name]
                m.walls.append(report["wall_s"])
                if report["startup_s"] is not None:
                    m.startups.append(report["startup_s"])
                if report["stream_s"] is not None:
                    m.streams.append(report["stream_s"])
                m.rss_mb.append(report["peak_rss_mb"])
                m.bytes = int(report["bytes"])
                print(
                    f"  [{repeat + 1}/{args.repeats}] {case.name:<26} {report['wall_s']:6.2f}s"
                    f"  rss {report['peak_rss_mb']:5.0f} MB",
                    flush=True,
                )
    finally:
        stop_group(server.pid)
        shutil.rmtree(HOME / "tmp", ignore_errors=True)

    results = summarize(measured)
    document = {
        "rows": args.rows,
        "machine": machine(),
        "commit": _git_commit(),
        "repeats": args.repeats,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "load_average_after": os.getloadavg(),
        "seed_s": round(seed_s, 1),
        "prefect_server_start_s": round(server_s, 1),
        "total_s": round(time.perf_counter() - began, 1),
        "notes": {
            "wall_s": "median process wall time, start to exit",
            "startup_s": "median process start -> first row read (fixed cost)",
            "stream_s": "median first row read -> last row written",
            "finish_s": "wall_s - startup_s - stream_s: store, job row, flow end, exit (fixed)",
            "rows_per_s/mb_per_s": "over stream_s",
            "ratio_to_copy": "stream_s / stream_s of the COPY baseline at the same N",
            "wall_ratio_to_copy": "wall_s / wall_s of the COPY baseline at the same N",
        },
        "targets": verdicts(results),
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(document, indent=2) + "\n")
    tmp.replace(args.out)
    print()
    print(table(results))
    print()
    for name, verdict in document["targets"].items():
        print(f"  target {name}: {verdict}")
    print(f"\nwrote {args.out} in {document['total_s']}s total")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
