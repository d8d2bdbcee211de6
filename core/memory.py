"""This process's memory, as Linux reports it (``None`` where ``/proc`` is not there).

``peak_rss_mb`` is the high-water resident set (``VmHWM``): for a process forked from a warm
parent it counts the parent's pages the child maps, shared or not. ``private_mb`` is what only
this process holds now (``Private_Clean + Private_Dirty``): for a forked child, the memory the
run itself costs on top of the parent it shares.
"""

from __future__ import annotations

import os
from pathlib import Path

ARROW_ALLOCATOR_ENV = {"MIMALLOC_ARENA_EAGER_COMMIT": "0", "MIMALLOC_PURGE_DELAY": "0"}
"""How Arrow's allocator (mimalloc, bundled with pyarrow) is told to hold memory: commit its
arenas as they are used rather than up front, and give freed pages back at once rather than
after a second. A forked 1M-row Parquet run peaked at 289-301 MB without them, 273-280 MB with
them, at the same speed (``bench``)."""


def tune_arrow_allocator() -> None:
    """Set ``ARROW_ALLOCATOR_ENV`` (unless the environment already says otherwise). mimalloc
    reads its options once, when pyarrow (or pandas, which imports it) is first imported:
    entry points call this before that, and the processes they start inherit it."""
    for name, value in ARROW_ALLOCATOR_ENV.items():
        os.environ.setdefault(name, value)


def _kb_fields(path: str, names: tuple[str, ...]) -> dict[str, int] | None:
    try:
        text = Path(path).read_text()
    except OSError:
        return None
    found: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in names:
            found[key] = int(rest.split()[0])
    return found


def peak_rss_mb() -> float | None:
    """High-water resident set of this process, in MB (``VmHWM``)."""
    fields = _kb_fields("/proc/self/status", ("VmHWM",))
    return fields["VmHWM"] / 1024 if fields and "VmHWM" in fields else None


def private_mb() -> float | None:
    """Memory only this process holds right now, in MB (``Private_Clean + Private_Dirty``)."""
    fields = _kb_fields("/proc/self/smaps_rollup", ("Private_Clean", "Private_Dirty"))
    return sum(fields.values()) / 1024 if fields else None
