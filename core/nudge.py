"""Wake the workers on this machine when a run was just created (a hint, never a queue).

A Prefect worker finds new runs by polling its pool (``PREFECT_WORKER_QUERY_SECONDS``, 2 s
under ``make serve``; at 0.5 s an export waited 0.47 s for the poll and its submission, median
of 20 in ``make bench``). The warm worker (``deployments.worker``) also listens on a datagram
socket ``<home>/workers/<pid>.sock``; whoever creates a run to start now (the API, a parallel
export's coordinator) sends every socket there one datagram, and each worker with a free slot
polls at once (one without waits for a slot to free, when it polls anyway; the reaper's
relaunches wait out a backoff: they are left to the poll). Nothing depends on it: with no
worker on this machine, or a nudge lost, the run is found by the next poll as before.
"""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path

from core.settings import get_settings

MESSAGE = b"poll"


def sockets_dir(home: Path) -> Path:
    return home / "workers"


def send(home: Path | None = None) -> int:
    """Nudge every worker listening under ``home`` (default: the settings' home); the number
    reached. A socket nobody listens on any more (its worker was killed) is removed."""
    if home is None:
        home = get_settings().home
    try:
        paths = sorted(sockets_dir(home).glob("*.sock"))
    except OSError:
        return 0
    if not paths:
        return 0
    reached = 0
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        for path in paths:
            try:
                sock.sendto(MESSAGE, str(path))
                reached += 1
            except (ConnectionRefusedError, FileNotFoundError):
                with contextlib.suppress(OSError):
                    path.unlink()
            except OSError:  # its buffer is full: it has nudges to read already
                pass
    return reached


def listen(home: Path | None = None) -> socket.socket | None:
    """A non-blocking datagram socket at ``<home>/workers/<pid>.sock`` (default: the settings'
    home; owner-only); ``None`` where one cannot be made (no AF_UNIX, a path over the OS's
    limit, a read-only home)."""
    if not hasattr(socket, "AF_UNIX"):
        return None
    if home is None:
        home = get_settings().home
    path = sockets_dir(home) / f"{os.getpid()}.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        sock.bind(str(path))
        path.chmod(0o600)
    except OSError:
        sock.close()
        return None
    sock.setblocking(False)
    return sock


def drain(sock: socket.socket) -> int:
    """Read every nudge waiting on ``sock`` (many nudges, one poll); how many there were."""
    count = 0
    while True:
        try:
            sock.recv(64)
        except (BlockingIOError, InterruptedError):
            return count
        count += 1


def close(sock: socket.socket) -> None:
    """Stop listening and remove the socket's file."""
    name = sock.getsockname()
    sock.close()
    if isinstance(name, str) and name:
        with contextlib.suppress(OSError):
            Path(name).unlink()
