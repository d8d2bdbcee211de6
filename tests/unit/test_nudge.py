"""Nudges: whoever creates a run wakes the workers on this machine (``core.nudge``)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import anyio
import pytest

from core import nudge
from deployments.worker import Wakeup, poll_when_a_slot_frees, poll_when_nudged


def test_a_nudge_reaches_every_listening_worker_and_stale_sockets_are_removed(
    tmp_path: Path,
) -> None:
    assert nudge.send(tmp_path) == 0  # no workers folder: nothing to do, no error
    first = nudge.listen(tmp_path)
    assert first is not None
    stale = nudge.sockets_dir(tmp_path) / "99999999.sock"  # a killed worker's file
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    dead.bind(str(stale))
    dead.close()
    try:
        assert nudge.send(tmp_path) == 1
        assert nudge.send(tmp_path) == 1
        assert not stale.exists()
        assert nudge.drain(first) == 2  # two nudges, read at once: one poll
        assert nudge.drain(first) == 0
        assert (Path(first.getsockname()).stat().st_mode & 0o777) == 0o600
    finally:
        nudge.close(first)
    assert list(nudge.sockets_dir(tmp_path).glob("*.sock")) == []


def test_no_socket_where_the_path_is_too_long(tmp_path: Path) -> None:
    home = tmp_path / ("x" * 120)
    assert nudge.listen(home) is None


class _Worker:
    """Stands in for the Prefect worker: ``is_setup``, ``limiter``, ``slot_freed``,
    ``get_and_submit_flow_runs``."""

    def __init__(self) -> None:
        self.is_setup = False
        self.polls = 0
        self.polled = anyio.Event()
        self.limiter = anyio.CapacityLimiter(2)
        self.slot_freed = Wakeup()

    async def get_and_submit_flow_runs(self) -> list[Any]:
        self.polls += 1
        self.polled.set()
        return []


@pytest.mark.anyio
async def test_the_worker_polls_when_nudged_unless_starting_or_every_slot_is_taken(
    tmp_path: Path,
) -> None:
    worker = _Worker()
    async with anyio.create_task_group() as group:
        group.start_soon(poll_when_nudged, worker, tmp_path)
        with anyio.fail_after(10):
            while not list(nudge.sockets_dir(tmp_path).glob("*.sock")):
                await anyio.sleep(0.01)
        nudge.send(tmp_path)  # still starting: ignored (its first poll comes anyway)
        await anyio.sleep(0.2)
        assert worker.polls == 0
        worker.is_setup = True
        runs = ("run-1", "run-2")  # as Prefect's worker takes slots: on behalf of each run
        for run in runs:
            worker.limiter.acquire_on_behalf_of_nowait(run)
        nudge.send(tmp_path)  # every slot taken: the run goes when a slot frees
        await anyio.sleep(0.2)
        assert worker.polls == 0
        worker.limiter.release_on_behalf_of(runs[1])
        assert nudge.send(tmp_path) == 1  # one run in flight, one slot free: poll now
        with anyio.fail_after(10):
            await worker.polled.wait()
        assert worker.polls == 1
        group.cancel_scope.cancel()
    assert list(nudge.sockets_dir(tmp_path).glob("*.sock")) == []  # removed on the way out


@pytest.mark.anyio
async def test_the_worker_polls_when_a_run_gives_its_slot_back(tmp_path: Path) -> None:
    """Runs waiting for a slot start when one frees, not at the next regular poll."""
    worker = _Worker()
    worker.slot_freed.set()  # freed before the loop waits: kept, not lost
    async with anyio.create_task_group() as group:
        group.start_soon(poll_when_a_slot_frees, worker)
        await anyio.sleep(0.2)
        assert worker.polls == 0  # still starting: its first poll comes anyway
        worker.is_setup = True
        worker.slot_freed.set()
        worker.slot_freed.set()  # two slots freed before the poll: one poll
        with anyio.fail_after(10):
            await worker.polled.wait()
        await anyio.sleep(0.2)
        assert worker.polls == 1
        worker.polled = anyio.Event()
        worker.slot_freed.set()
        with anyio.fail_after(10):
            await worker.polled.wait()
        assert worker.polls == 2
        group.cancel_scope.cancel()
