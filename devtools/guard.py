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
    """SIGTERM the group twice, then SIGKILL it if the command has not exited."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    group = os.getpgrp()
    for _ in range(2):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGTERM)
        time.sleep(0.5)
    deadline = time.monotonic() + GRACE_S
    while child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGKILL)  # the rest of the group (and this guard) goes now


def main(argv: list[str]) -> int:
    parent = os.getppid()
    die_with_parent()
    if os.getppid() != parent:  # the parent died before the request took effect
        return 1
    child = subprocess.Popen(argv)
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        if not stopping:
            stopping = True
            stop_group(child)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return child.wait()


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
