"""The benchmark's bookkeeping: which cases it runs and the shape of the results it writes.

Timing itself is never asserted; ``make bench`` measures it.
"""

from __future__ import annotations

import json

from bench.run import Measured, cases, summarize, table, verdicts
from core.formats import FORMATS


def test_cases_cover_every_registered_format_and_skip_the_others() -> None:
    compressions = {name: tuple(f.compressions) for name, f in FORMATS.items()}
    names = [c.name for c in cases(1000, [*FORMATS], compressions)]

    assert names[:3] == ["copy", "copy-10pct", "pandas-naive"]
    assert {f"exportflow-{f}" for f in FORMATS} <= set(names)
    assert {"exportflow-csv-gzip", "exportflow-csv-zstd", "exportflow-csv-novalidate"} <= set(names)
    assert "exportflow-csv-10pct" in names
    assert not [n for n in names if n.startswith("exportflow-xlsx")] or "xlsx" in FORMATS


def test_results_have_the_shape_the_issue_gives() -> None:
    todo = cases(1000, ["csv"], {"csv": ("gzip",)})
    measured = {c.name: Measured(c) for c in todo}
    for i, m in enumerate(measured.values()):
        m.walls, m.startups, m.streams = [2.0 + i, 1.0 + i, 3.0 + i], [0.5] * 3, [1.0 + i] * 3
        m.rss_mb, m.bytes = [100.0, 110.0, 105.0], 65_000

    results = summarize(measured)
    document = {"rows": 1000, "machine": "test", "targets": verdicts(results), "results": results}
    json.dumps(document)

    by = {r["name"]: r for r in results}
    assert by["copy"]["ratio_to_copy"] == 1.0
    csv = by["exportflow-csv"]
    assert {"name", "format", "rows", "wall_s", "bytes", "peak_rss_mb", "ratio_to_copy"} <= set(csv)
    assert csv["validation"] is True and by["exportflow-csv-novalidate"]["validation"] is False
    assert csv["wall_s"] == 2.0 + [c.name for c in todo].index("exportflow-csv")  # median of 3
    assert csv["peak_rss_mb"] == 110.0
    assert by["exportflow-csv-10pct"]["baseline"] == "copy-10pct"
    assert document["targets"]["csv_stream_ratio"]["met"] is not None
    assert table(results).count("\n") == len(results)
