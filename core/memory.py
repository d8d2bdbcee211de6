"""This process's memory, as Linux reports it (``None`` where ``/proc`` is not there).

``peak_rss_mb`` is the high-water resident set (``VmHWM``): for a process forked from a warm
parent it counts the parent's pages the child maps, shared or not. ``private_mb`` is what only
this process holds now (``Private_Clean + Private_Dirty``): for a forked child, the memory the
run itself costs on top of the parent it shares.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

ARROW_ALLOCATOR_ENV = {"MIMALLOC_ARENA_EAGER_COMMIT": "0", "MIMALLOC_PURGE_DELAY": "0"}
"""How Arrow's allocator (mimalloc, bundled with pyarrow) is told to hold memory: commit its
arenas as they are used rather than up front, and give freed pages back at once rather than
after a second. A forked 1M-row Parquet run peaked at 289-301 MB without them, 273-280 MB with
them, at the same speed (``bench``)."""


MMAP_THRESHOLD_BYTES = 128 << 10
"""glibc's malloc serves blocks from this size up with their own mappings, given back when
freed. Left alone, glibc raises the threshold each time such a block is freed, and from then on
serves them from its heaps, which keep what they once held: the COPY stream's 1 MB blocks and
Great Expectations' pandas columns then grew a forked 1M-row CSV run's heap by ~20 MB over its
first 600k rows (peak 257-263 MB; pinned: 247-251 MB; a 100k-row run 219-220 MB either way)."""

_M_MMAP_THRESHOLD = -3  # mallopt(3)


def tune_allocators() -> None:
    """Arrow's mimalloc options (``ARROW_ALLOCATOR_ENV``) and glibc's ``MMAP_THRESHOLD_BYTES``,
    unless the environment already says otherwise.

    mimalloc reads its options once, when pyarrow (or pandas, which imports it) is first
    imported: entry points call this before that; processes they start inherit the environment,
    and a fork the whole setting. Without glibc (musl, macOS) the second part is skipped."""
    for name, value in ARROW_ALLOCATOR_ENV.items():
        os.environ.setdefault(name, value)
    if "MALLOC_MMAP_THRESHOLD_" in os.environ:  # glibc applied the operator's own at start
        return
    try:
        libc = ctypes.CDLL(None)  # this process's own symbols: the C library's among them
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # noqa: B018  (glibc only: musl has mallopt as a no-op)
    except (OSError, AttributeError, TypeError):
        return
    mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)


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
