"""Run a command so that it dies with its supervisor: ``python -m devtools.guard CMD ...``.

``make serve`` starts each service through this guard as the leader of its own process group.
The guard asks Linux to send it SIGTERM when its parent dies (``PR_SET_PDEATHSIG``), even by
SIGKILL, and on any SIGTERM/SIGINT stops the whole group: SIGTERM twice (a Prefect worker
needs two), then SIGKILL after a grace period. So nothing of a killed ``serve`` keeps serving.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time

PR_SET_PDEATHSIG = 1
GRACE_S = 10.0


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Linux: deliver ``sig`` to this process when its parent exits (no-op elsewhere)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)


def stop_group(child: subprocess.Popen[bytes]) -> None:
    """SIGTERM the group twice, then SIGKILL it (with this guard) once the command has exited
    or after ``GRACE_S``."""
    group = os.getpgrp()
    for _ in range(2):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGTERM)
        if child.poll() is None:
            time.sleep(0.5)
    deadline = time.monotonic() + GRACE_S
    while child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGKILL)  # the rest of the group (and this guard) goes now


class _Stop(Exception):
    """Raised by the signal handler to leave ``child.wait()``."""


def _on_signal(signum: int, frame: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise _Stop


def main(argv: list[str]) -> int:
    parent = os.getppid()
    die_with_parent()
    if os.getppid() != parent:  # the parent died before the request took effect
        return 1
    child = subprocess.Popen(argv)
    try:
        signal.signal(signal.SIGTERM, _on_signal)
        signal.signal(signal.SIGINT, _on_signal)
        return child.wait()
    except _Stop:
        # Stopped outside the handler: inside it, ``child.wait()`` holds the lock that
        # ``child.poll()`` needs, so a child that exited at once still looked alive for the
        # whole grace period (~11 s per service, 47 s for a Ctrl-C of serve).
        stop_group(child)
        return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
