"""One measured run, in its own process: ``python -m bench.child KIND SPEC_JSON``.

``bench.run`` starts this module once per run and reads the one JSON line it prints last.
Kinds:

* ``copy`` -- PostgreSQL's own ``COPY (<select>) TO STDOUT (FORMAT csv, HEADER)`` into a file,
  through psycopg only (the ceiling: no parsing, no Python objects per row);
* ``pandas`` -- the naive way: ``pandas.read_sql(chunksize=10000)`` + ``to_csv``;
* ``flow`` -- exportflow's real Prefect flow (job row, extract, validation, writer, storage),
  in a fresh interpreter: the CLI's path (``exportflow export``);
* ``dlt`` -- the peer users would pick instead: dlt's ``sql_table`` -> ``filesystem`` on the
  same rows, filter, columns and order, with the pyarrow or connectorx backend, large chunks
  and compression off.

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


def _dlt(spec: dict[str, Any]) -> dict[str, Any]:
    import os

    # dlt reads its config from the environment: no gzip of the written files, quiet progress.
    os.environ["NORMALIZE__DATA_WRITER__DISABLE_COMPRESSION"] = "true"
    os.environ["RUNTIME__LOG_LEVEL"] = "WARNING"
    os.environ["DLT_DATA_DIR"] = spec["work"]
    import dlt
    import sqlalchemy as sa
    from dlt.sources.sql_database import sql_table

    tenant, columns = spec["tenant"], spec["columns"]

    def scoped(query: Any, table: Any) -> Any:
        """The export's filter and order (``table`` holds only the exported columns)."""
        return query.where(sa.column("tenant_id") == tenant).order_by(
            sa.column("created_at"), sa.column("id")
        )

    marks: dict[str, float] = {}

    def first_chunk(item: Any) -> Any:
        marks.setdefault("first", time.time())
        return item

    url = spec["url"].replace("postgresql://", "postgresql+psycopg://", 1)
    backend_kwargs: dict[str, Any] = {}
    if spec["backend"] == "connectorx":
        # connectorx (Rust) takes a Unix socket directory as a percent-encoded host only.
        backend_kwargs["conn"] = _socket_host_url(spec["url"])
    table = sql_table(
        credentials=url,
        table="vouchers",
        included_columns=columns,
        backend_kwargs=backend_kwargs,
        query_adapter_callback=scoped,
        backend=spec["backend"],
        chunk_size=spec.get("chunk_size", 100_000),
        reflection_level="minimal",
    ).add_map(first_chunk)
    table.apply_hints(primary_key=[])  # the key column ``id`` is not among the exported ones
    out = Path(spec["out"]).parent / f"dlt-{spec['backend']}-{spec['format']}"
    pipeline = dlt.pipeline(
        pipeline_name=f"bench_{spec['backend']}_{spec['format']}",
        destination=dlt.destinations.filesystem(bucket_url=out.as_uri()),
        dataset_name="bench",
        pipelines_dir=spec["work"],
    )
    pipeline.run(table, loader_file_format=spec["format"], write_disposition="replace")
    last = time.time()
    files = [p for p in out.rglob(f"*.{spec['format']}") if "_dlt" not in p.name]
    written = sum(p.stat().st_size for p in files)
    import shutil

    shutil.rmtree(out, ignore_errors=True)
    return {"bytes": written, "first_row_at": marks.get("first"), "last_row_at": last}


def _socket_host_url(url: str) -> str:
    """``postgresql://u:@/db?host=%2Fdir`` -> ``postgresql://u@%2Fdir/db`` (TCP URLs as is)."""
    from urllib.parse import parse_qs, quote, urlsplit

    parts = urlsplit(url)
    socket_dir = parse_qs(parts.query).get("host", [""])[0]
    if parts.hostname or not socket_dir:
        return url
    user = parts.username or ""
    auth = f"{user}:{parts.password}@" if parts.password else f"{user}@"
    return f"{parts.scheme}://{auth}{quote(socket_dir, safe='')}{parts.path}"


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


KINDS = {"copy": _copy, "pandas": _pandas, "flow": _flow, "dlt": _dlt}


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
