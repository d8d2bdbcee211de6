"""What the CLI prints besides jobs: the catalog (``entities``, ``fields``) and export progress.

Progress is a rich bar (rows, rows/s, ETA) on a terminal and plain lines otherwise (logs, CI,
pipes): at most one line per ``PLAIN_EVERY_S`` plus the last one.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO

from core.formats import FORMATS
from core.types import human_label
from entities import ENTITIES, Entity

PLAIN_EVERY_S = 5.0


def entities_table() -> list[str]:
    """One line per entity: name, CLI plural, flow, defaults, sort, metadata, checks."""
    rows = [("ENTITY", "CLI NAME", "FLOW", "FIELDS", "DEFAULT ORDER", "METADATA", "CHECKS")]
    for entity in ENTITIES.values():
        rows.append(
            (
                entity.name,
                entity.plural,
                entity.flow_name,
                f"{len(entity.fields)} ({len(entity.default_fields)} by default)",
                entity.default_order,
                "metadata.<key>" if entity.metadata_column is not None else "-",
                str(len(entity.expectations)),
            )
        )
    lines = _columns(rows)
    lines += [
        "",
        f"formats: {', '.join(FORMATS)}",
        "`exportflow fields ENTITY` lists an entity's fields, sort keys and filters.",
    ]
    return lines


def fields_table(entity: Entity) -> list[str]:
    """Every field of ``entity``: type, default, sortable, filterable, label; then filters."""
    checks: dict[str, list[str]] = {}
    for exp in entity.expectations:
        checks.setdefault(exp.column, []).append(exp.kind)
    rows = [("FIELD", "TYPE", "DEFAULT", "SORT", "FILTER", "CHECKS", "LABEL")]
    for name, fld in entity.fields.items():
        default = entity.default_fields.index(name) + 1 if name in entity.default_fields else None
        rows.append(
            (
                name,
                fld.type,
                f"yes ({default})" if default else "",
                "yes" if name in entity.sort_keys else "",
                "yes" if fld.filterable and name != "metadata" else "",
                ",".join(checks.get(name, [])),
                fld.label or human_label(name),
            )
        )
    lines = [f"{entity.name} ({entity.plural}): {entity.description}".rstrip(": "), ""]
    lines += _columns(rows)
    lines += ["", f"default fields: {', '.join(entity.default_fields)}"]
    lines.append(
        f"default order:  {entity.default_order} (sort keys: {', '.join(entity.sort_keys)})"
    )
    if entity.filter_aliases:
        aliases = ", ".join(f"{a} (= {t})" for a, t in entity.filter_aliases.items())
        lines.append(f"more filters:   {aliases}")
    if entity.metadata_column is not None:
        lines.append(
            "metadata:       `metadata` = one column per key present; `metadata.<key>` = one"
            " column, filterable; values keep their JSON type (json, jsonl, parquet, xlsx)"
        )
    return lines


def _columns(rows: Sequence[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]


class ProgressView:
    """An export's progress: ``update(rows, total)`` as chunks land, ``close()`` at the end."""

    def __init__(self, what: str, out: TextIO | None = None, *, rich: bool | None = None) -> None:
        self.what = what
        self.out = out or sys.stderr
        self.rich = self.out.isatty() if rich is None else rich
        self._bar: Any = None
        self._task: Any = None
        self._started: float | None = None
        self._last_line = 0.0
        self._last: tuple[int, int] | None = None
        self._printed: tuple[int, int] | None = None

    def update(self, rows: int, total: int) -> None:
        if self._started is None:  # rates count from the first report (the count), not startup
            self._started = time.monotonic()
        self._last = (rows, total)
        if self.rich:
            self._rich(rows, total)
        elif time.monotonic() - self._last_line >= PLAIN_EVERY_S or (total and rows >= total):
            self._line(rows, total)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        elif self._last is not None and not self.rich and self._last != self._printed:
            self._line(*self._last)

    def _rich(self, rows: int, total: int) -> None:
        if self._bar is None:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TaskProgressColumn,
                TextColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TaskProgressColumn(),
                TextColumn("{task.fields[rate]}"),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=Console(file=self.out),
                transient=False,
            )
            self._task = self._bar.add_task(self.what, total=total or None, rate="")
            self._bar.start()
        self._bar.update(self._task, completed=rows, total=total or None, rate=self._rate(rows))

    def _rate(self, rows: int) -> str:
        elapsed = time.monotonic() - (self._started or time.monotonic())
        return f"{rows / elapsed:,.0f} rows/s" if elapsed > 0 else ""

    def _line(self, rows: int, total: int) -> None:
        self._printed = (rows, total)
        self._last_line = time.monotonic()
        elapsed = self._last_line - (self._started or self._last_line)
        rate = rows / elapsed if elapsed > 0 else 0.0
        share = f" ({100 * rows / total:.0f}%)" if total else ""
        eta = f", ETA {(total - rows) / rate:.0f}s" if rate and total > rows else ""
        print(
            f"{self.what}: {rows:,} of {total:,} rows{share}, {rate:,.0f} rows/s{eta}",
            file=self.out,
            flush=True,
        )
