"""This process's memory, as Linux reports it (``None`` where ``/proc`` is not there).

``peak_rss_mb`` is the high-water resident set (``VmHWM``): for a process forked from a warm
parent it counts the parent's pages the child maps, shared or not. ``private_mb`` is what only
this process holds now (``Private_Clean + Private_Dirty``): for a forked child, the memory the
run itself costs on top of the parent it shares.
"""

from __future__ import annotations

from pathlib import Path


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
