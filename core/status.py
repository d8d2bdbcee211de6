"""The one status vocabulary of an export: the table's CHECK and trigger, the jobs repository
and the API all read it from here."""

from __future__ import annotations

from typing import Literal, get_args

Status = Literal["SCHEDULED", "IN_PROGRESS", "DONE", "ERROR", "EXPIRED", "CANCELLED"]
STATUSES: tuple[Status, ...] = get_args(Status)
ACTIVE: tuple[Status, ...] = ("SCHEDULED", "IN_PROGRESS")
"""Not finished: a worker may still pick it up or is running it."""

TRANSITIONS: frozenset[tuple[Status, Status]] = frozenset(
    {
        ("SCHEDULED", "IN_PROGRESS"),
        ("SCHEDULED", "ERROR"),
        ("SCHEDULED", "CANCELLED"),
        ("SCHEDULED", "EXPIRED"),
        ("IN_PROGRESS", "DONE"),
        ("IN_PROGRESS", "ERROR"),
        ("IN_PROGRESS", "CANCELLED"),
        ("IN_PROGRESS", "EXPIRED"),
        ("DONE", "EXPIRED"),
    }
)
"""Every allowed status change; a finished job never goes back."""

PublicStatus = Literal["SCHEDULED", "IN_PROGRESS", "DONE", "ERROR"]
PUBLIC_STATUS: dict[Status, PublicStatus] = {
    "SCHEDULED": "SCHEDULED",
    "IN_PROGRESS": "IN_PROGRESS",
    "DONE": "DONE",
    "ERROR": "ERROR",
    "EXPIRED": "ERROR",
    "CANCELLED": "ERROR",
}
"""Voucherify's SDKs accept only four statuses; the finer ones travel in ``state``."""

Channel = Literal["API", "PREFECT_UI", "SCHEDULE", "CLI"]
