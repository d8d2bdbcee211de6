"""One measured run, in its own process: ``python -m bench.child KIND SPEC_JSON``.

``bench.run`` starts this module once per run and reads the one JSON line it prints last.
Kinds:

* ``copy`` -- PostgreSQL's own ``COPY (<select>) TO STDOUT (FORMAT csv, HEADER)`` into a file,
  through psycopg only (the ceiling: no parsing, no Python objects per row);
* ``pandas`` -- the naive way: ``pandas.read_sql(chunksize=10000)`` + ``to_csv``;
* ``flow`` -- exportflow's real Prefect flow (job row, extract, validation, writer, storage).

Every kind reports ``first_row_at`` and ``last_row_at``: when its first row was read and when
its last row was written (for the flow, when ``tasks.extract`` logs the first COPY data and the
end of the COPY stream, which it reaches once the last batch is written), so the parent can
split wall time into fixed start-up, streaming, and fixed finishing (store, job row, exit).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any


def _copy(spec: dict[str, Any]) -> dict[str, Any]:
    import psycopg

    first: float | None = None
    written = 0
    with (
        psycopg.connect(spec["url"]) as conn,
        conn.cursor() as cur,
        open(spec["out"], "wb") as out,
        cur.copy(spec["sql"], spec["params"]) as copy,
    ):
        for block in copy:
            if first is None:
                first = time.time()
            written += out.write(block)
        last = time.time()
    return {"bytes": written, "first_row_at": first, "last_row_at": last, "location": spec["out"]}


def _pandas(spec: dict[str, Any]) -> dict[str, Any]:
    import pandas as pd
    import sqlalchemy as sa

    engine = sa.create_engine(spec["url"].replace("postgresql://", "postgresql+psycopg://", 1))
    first: float | None = None
    rows = 0
    with engine.connect() as conn, open(spec["out"], "w", encoding="utf-8", newline="") as out:
        for i, frame in enumerate(pd.read_sql(sa.text(spec["select"]), conn, chunksize=10_000)):
            if first is None:
                first = time.time()
            frame.to_csv(out, header=i == 0, index=False)
            rows += len(frame)
        last = time.time()
    return {
        "bytes": Path(spec["out"]).stat().st_size,
        "rows": rows,
        "first_row_at": first,
        "last_row_at": last,
    }


class _Marks:
    """Notes when ``tasks.extract`` logs the first COPY data and the end of the COPY stream."""

    first: float | None = None
    last: float | None = None

    @classmethod
    def install(cls) -> None:
        import logging

        class Handler(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                message = record.getMessage()
                if cls.first is None and "first COPY data" in message:
                    cls.first = record.created
                elif "COPY stream finished" in message:
                    cls.last = record.created

        logger = logging.getLogger("tasks.extract")
        logger.setLevel(logging.DEBUG)
        logger.addHandler(Handler(logging.DEBUG))


def _flow(spec: dict[str, Any]) -> dict[str, Any]:
    from flows.exports import export_vouchers

    _Marks.install()
    parameters = {
        "format": spec["format"],
        "compression": spec.get("compression"),
        "validation": spec["validation"],
        "parallelism": spec.get("parallelism") or _env_int("BENCH_PARALLELISM"),
    }
    job = export_vouchers(
        tenant=spec["tenant"], parameters={k: v for k, v in parameters.items() if v is not None}
    )
    result = job["result"]
    return {
        "bytes": result["bytes"],
        "rows": result["row_count"],
        "location": result["location"],
        "first_row_at": _Marks.first,
        "last_row_at": _Marks.last,
        "status": job["status"],
    }


def _env_int(name: str) -> int | None:
    import os

    value = os.environ.get(name)
    return int(value) if value else None


def _peak_rss_mb() -> float | None:
    """This process's own high-water RSS (``VmHWM``).

    ``wait4``/``getrusage`` report at least the RSS the parent had when it forked (Linux keeps
    the pre-``exec`` high-water mark), which would bill the parent's memory to every child.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


KINDS = {"copy": _copy, "pandas": _pandas, "flow": _flow}


def main(argv: list[str]) -> int:
    kind, spec = argv[0], json.loads(argv[1])
    report = KINDS[kind](spec)
    report["finished_at"] = time.time()
    report["peak_rss_mb"] = _peak_rss_mb()
    sys.stdout.write("\n" + json.dumps(report) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
