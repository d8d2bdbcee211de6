"""Benchmark: the write stage of every format on the seeded vouchers, one process per format.

Runs ``tasks.write.write_file`` (COPY -> Arrow -> sink -> file, no GX, no Prefect) so the
numbers are the format's cost; prints wall time, rows/s, output size and peak RSS.

    .venv/bin/python -m exportflow seed --vouchers 1000000 --tenants 2
    .venv/bin/python bench/formats.py [tenant]
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SPECS: list[dict[str, Any]] = [
    {"format": "csv"},
    {"format": "csv", "compression": "gzip"},
    {"format": "csv", "compression": "zstd"},
    {"format": "json"},
    {"format": "jsonl"},
    {"format": "jsonl", "compression": "zstd"},
    {"format": "parquet"},
    {"format": "xlsx"},
    {"format": "csv", "partition_by": "metadata.region"},
    {"format": "xlsx", "partition_by": "metadata.region"},
]


def run_one(tenant: str, params: dict[str, Any]) -> dict[str, Any]:
    from core.settings import get_settings
    from db.engine import get_engine
    from entities.vouchers import VOUCHERS
    from query.plan import plan_export
    from tasks.write import write_file

    plan = plan_export(VOUCHERS, tenant, {**params, "validation": False})
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        produced = write_file(
            get_engine(),
            plan,
            Path(tmp) / "out",
            settings=get_settings(),
        )
        took = time.perf_counter() - started
    return {
        "seconds": took,
        "rows": produced.row_count,
        "bytes": produced.bytes,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--one":
        print(json.dumps(run_one(sys.argv[2], json.loads(sys.argv[3]))))
        return
    tenant = sys.argv[1] if len(sys.argv) > 1 else "demo"
    for params in SPECS:
        out = subprocess.run(
            [sys.executable, __file__, "--one", tenant, json.dumps(params)],
            capture_output=True,
            text=True,
            check=True,
        )
        r = json.loads(out.stdout.strip().splitlines()[-1])
        label = params["format"] + (f"+{params['compression']}" if "compression" in params else "")
        if "partition_by" in params:
            label = f"zip({params['format']} by region)"
        print(
            f"{label:<22} {r['rows']:>10,} rows {r['seconds']:7.2f} s "
            f"{r['rows'] / r['seconds']:>10,.0f} rows/s {r['bytes'] / 1e6:8.1f} MB "
            f"{r['peak_rss_mb']:6.0f} MB RSS"
        )


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main()
