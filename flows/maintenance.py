"""The maintenance flow: a sequence of housekeeping tasks, run every minute by the
``maintenance`` deployment (and once by ``exportflow maintain``).

Each step is a task returning lines saying what it did; a step that fails does not stop the
others. Further steps (expiry, purge) are added to ``STEPS``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prefect import flow, get_run_logger

from tasks.events import send_due_webhooks
from tasks.reaper import (
    abort_old_uploads,
    reap_lost_exports,
    remove_orphaned_temp_files,
    remove_stale_part_files,
)
from tasks.retention import expire_exports, purge_records

STEPS: list[Callable[[], list[str] | dict[str, Any]]] = [
    reap_lost_exports,
    remove_orphaned_temp_files,
    abort_old_uploads,
    remove_stale_part_files,
    expire_exports,
    purge_records,
    send_due_webhooks,
]


@flow(
    name="maintain",
    description="Reap lost exports, clean up temp files and uploads, expire files, purge old rows,"
    " send due webhooks.",
)
def maintain() -> list[str]:
    """Run every maintenance step; returns what was done, one line per action."""
    logger = get_run_logger()
    report: list[str] = []
    for step in STEPS:
        try:
            done = step()
            report.extend(done if isinstance(done, list) else [_summary(step, done)])
        except Exception as exc:
            name = getattr(step, "name", None) or getattr(step, "__name__", "step")
            logger.error("maintenance step %s failed: %s", name, exc)
            report.append(f"{name} failed: {exc}")
    return report


def _summary(step: object, report: dict[str, Any]) -> str:
    """One line for a step that reports counts (expiry, purge)."""
    name = getattr(step, "name", None) or getattr(step, "__name__", "step")
    counts = {k: v for k, v in report.items() if isinstance(v, int)}
    return f"{name}: " + ", ".join(f"{k} {v}" for k, v in counts.items())
