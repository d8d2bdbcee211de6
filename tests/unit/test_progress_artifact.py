"""The progress artifact never holds the stream up: Prefect hears it from a thread of its own.

Prefect's store is replaced here by slow functions, the one part of this that cannot be made
slow for real on demand (a SQLite store locked for 60 s did it once in ``make bench``).
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import prefect.artifacts
import pytest

from db.jobs import Job
from tasks.report import ProgressArtifact
from tests.helpers import new_job


def _job() -> Job:
    return new_job("acme", "IN_PROGRESS")


def test_a_slow_prefect_store_does_not_hold_the_writer_and_updates_coalesce(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[str, float]] = []
    release = threading.Event()

    def slow_create(data: float, **kwargs: Any) -> uuid.UUID:
        release.wait(10)  # the store is locked until the writer is done
        calls.append(("create", data))
        return uuid.uuid4()

    def update(artifact_id: uuid.UUID, data: float, **kwargs: Any) -> None:
        calls.append(("update", data))

    monkeypatch.setattr(prefect.artifacts, "create_progress_artifact", slow_create)
    monkeypatch.setattr(prefect.artifacts, "update_progress_artifact", update)
    artifact = ProgressArtifact(_job(), shown_after_s=0)  # Prefect hears it at once
    started = time.monotonic()
    artifact.start(1000)
    for rows in range(100, 1001, 100):  # the writer's chunks, while Prefect is stuck
        artifact.update(rows)
    assert time.monotonic() - started < 1  # none of them waited for the store
    release.set()
    artifact.close(wait_s=10)

    assert calls[0][0] == "create"  # with the progress of when its thread got to it
    assert calls[-1][1] == 100.0  # the last progress arrives (in the create, if it was late)
    assert len(calls) <= 3  # the ten updates made while it was stuck were coalesced


def _recording(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, float, float]]:
    calls: list[tuple[str, float, float]] = []

    def create(data: float, **kwargs: Any) -> uuid.UUID:
        calls.append(("create", data, time.monotonic()))
        return uuid.uuid4()

    def update(artifact_id: uuid.UUID, data: float, **kwargs: Any) -> None:
        calls.append(("update", data, time.monotonic()))

    monkeypatch.setattr(prefect.artifacts, "create_progress_artifact", create)
    monkeypatch.setattr(prefect.artifacts, "update_progress_artifact", update)
    return calls


def _started(
    monkeypatch: pytest.MonkeyPatch, shown_after_s: float, total: int, rows: int
) -> tuple[ProgressArtifact, list[tuple[str, float, float]], float]:
    """An artifact whose Prefect calls are recorded, counted at ``total``, at ``rows``; and
    when it was counted."""
    calls = _recording(monkeypatch)
    artifact = ProgressArtifact(_job(), shown_after_s=shown_after_s)
    started = time.monotonic()
    artifact.start(total)
    artifact.update(rows)
    return artifact, calls, started


def test_a_short_export_makes_one_request_with_its_final_progress(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    artifact, calls, started = _started(monkeypatch, 30, total=10, rows=10)
    artifact.update(10)  # the writer's last chunk, then its final count
    artifact.close(wait_s=5)
    assert [c[:2] for c in calls] == [("create", 100.0)]
    assert calls[0][2] - started < 5  # at the end, not after the 30 s


def test_a_longer_export_shows_its_progress_once_it_ran_a_while(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    artifact, calls, started = _started(monkeypatch, 0.3, total=1000, rows=100)
    deadline = time.monotonic() + 10
    while not calls and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [c[:2] for c in calls] == [("create", 10.0)]  # the progress of then
    assert calls[0][2] - started >= 0.3
    artifact.update(1000)
    artifact.close(wait_s=5)
    assert [c[:2] for c in calls] == [("create", 10.0), ("update", 100.0)]


def test_close_gives_up_on_a_store_that_does_not_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    never = threading.Event()
    monkeypatch.setattr(
        prefect.artifacts, "create_progress_artifact", lambda *a, **k: never.wait(30)
    )
    artifact = ProgressArtifact(_job())
    artifact.start(10)
    started = time.monotonic()
    artifact.close(wait_s=0.5)
    assert time.monotonic() - started < 5
    never.set()


def test_throttle_calls_at_the_first_value_then_at_most_every_interval_and_on_flush() -> None:
    """The mechanism behind lease renewals, the UI's progress and a part's progress."""
    from tasks.write import Throttle

    seen: list[int] = []
    hourly = Throttle(seen.append, 3600)
    for rows in (10, 20, 30):
        hourly(rows)
    assert seen == [10]  # the first at once, even right after the machine booted
    hourly.flush()
    assert seen == [10, 30]  # the latest on flush

    every: list[int] = []
    always = Throttle(every.append, 0)
    for rows in (1, 2, 3):
        always(rows)
    assert every == [1, 2, 3]
