"""Parallel CSV exports against COPY in one run: ``python -m bench.parallel`` (issue 14).

For each size (default 1M and 5M vouchers, ``BENCH_PARALLEL_ROWS=1000000,5000000``): COPY,
the CSV export at ``parallelism`` 1 and at 2, each a separate process timed by
``bench.run.run_once`` (whole-process wall; peak RSS of that process). The parts of the
parallel case run as threads of that one process (``EXPORTFLOW_PARTS_LAUNCHER=inprocess``),
so its RSS is what one worker holding the coordinator and both parts needs; on a pool each
part is its own process. Kept apart from ``bench.run`` so the two evolve separately; it
reuses its seeding, Prefect server and timing. Results: ``bench/results/parallel.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.run import (
    HOME,
    Case,
    base_env,
    machine,
    run_once,
    statements,
)
from devtools.procs import free_port, start_group, stop_group, wait_http

RESULTS = Path(__file__).resolve().parent / "results" / "parallel.json"


def start_prefect(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    """One Prefect API server for the run's children (in-process parts need no workers)."""
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


def parallel_cases(rows: int, tenant: str) -> list[tuple[Case, int | None]]:
    """COPY, then the CSV export at parallelism 1 and 2 (validation on, as users run it)."""
    tag = f"{rows // 1_000_000}M" if rows >= 1_000_000 else f"{rows // 1000}k"
    copy = Case(f"copy-{tag}", "copy", "csv", tenant, rows, baseline=f"copy-{tag}")
    flow = Case(f"csv-p1-{tag}", "flow", "csv", tenant, rows, None, True, baseline=copy.name)
    return [(copy, None), (flow, 1), (replace(flow, name=f"csv-p2-{tag}"), 2)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    sizes = os.environ.get("BENCH_PARALLEL_ROWS", "1000000,5000000")
    parser.add_argument("--rows", default=sizes, help="Comma-separated sizes.")
    parser.add_argument("--repeats", type=int, default=int(os.environ.get("BENCH_REPEATS", 1)))
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    began = time.perf_counter()
    HOME.mkdir(parents=True, exist_ok=True)
    os.environ["EXPORTFLOW_HOME"] = str(HOME)
    for name in ("DATABASE_URL", "EXPORTFLOW_DATABASE_URL"):
        os.environ.pop(name, None)
    from db.engine import get_engine
    from db.migrate import upgrade
    from devtools.sample import create_source_schema, seed

    engine = get_engine()
    upgrade(engine)
    create_source_schema(engine)
    todo: list[tuple[Case, int | None]] = []
    sql: dict[str, Any] = {}
    for rows in [int(r) for r in args.rows.split(",")]:
        tenant = f"par{rows}"
        print(f"seeding {rows:,} vouchers for {tenant} ...", flush=True)
        seed(engine, rows, (tenant,))
        sql[tenant] = statements(engine, tenant)
        todo += parallel_cases(rows, tenant)
    url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    env = base_env(url)
    env.update(EXPORTFLOW_PARTS_LAUNCHER="inprocess", EXPORTFLOW_PARALLEL_MIN_PART_ROWS="1")
    server, api = start_prefect(env)
    env["PREFECT_API_URL"] = api
    walls: dict[str, list[float]] = {c.name: [] for c, _ in todo}
    rss: dict[str, list[float]] = {c.name: [] for c, _ in todo}
    out_bytes: dict[str, int] = {}
    try:
        for _ in range(args.repeats):
            for case, parallelism in todo:
                child_env = dict(env)
                if parallelism is not None:
                    child_env["BENCH_PARALLELISM"] = str(parallelism)
                report = run_once(case, child_env, sql[case.tenant], url)
                walls[case.name].append(report["wall_s"])
                rss[case.name].append(report["peak_rss_mb"])
                out_bytes[case.name] = int(report["bytes"])
                print(
                    f"  {case.name:<12} {report['wall_s']:7.2f}s  rss {report['peak_rss_mb']:5.0f}"
                    " MB",
                    flush=True,
                )
    finally:
        stop_group(server.pid)
        shutil.rmtree(HOME / "tmp", ignore_errors=True)
    results = []
    for case, parallelism in todo:
        wall = statistics.median(walls[case.name])
        base = statistics.median(walls[case.baseline])
        results.append(
            {
                "case": case.name,
                "rows": case.rows,
                "parallelism": parallelism,
                "wall_s": round(wall, 2),
                "rows_per_s_wall": round(case.rows / wall),
                "peak_rss_mb": round(max(rss[case.name])),
                "bytes": out_bytes[case.name],
                "wall_ratio_to_copy": round(wall / base, 2),
            }
        )
    document = {
        "machine": machine(),
        "cpus": os.cpu_count(),
        "repeats": args.repeats,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "load_average_after": os.getloadavg(),
        "total_s": round(time.perf_counter() - began, 1),
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=2) + "\n")
    print(f"\n{'case':<12} {'rows':>10} {'wall s':>8} {'rows/s':>10} {'RSS MB':>7} {'xCOPY':>6}")
    for r in results:
        print(
            f"{r['case']:<12} {r['rows']:>10,} {r['wall_s']:>8.2f} {r['rows_per_s_wall']:>10,}"
            f" {r['peak_rss_mb']:>7} {r['wall_ratio_to_copy']:>6.2f}"
        )
    print(f"\nwrote {args.out} in {document['total_s']}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
