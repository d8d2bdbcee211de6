"""The one process helper of the dev tooling (``make serve``, the bench, the test fixtures):
Prefect's local-mode environment, ports, process groups, waiting for HTTP."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, MutableMapping
from pathlib import Path


def prefect_defaults(env: MutableMapping[str, str], home: Path, *, quiet: bool = True) -> None:
    """Local-mode Prefect: state under ``home/prefect``, no telemetry, patient start on 2 cores."""
    env.setdefault("PREFECT_HOME", str(home.resolve() / "prefect"))
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    env.setdefault("DO_NOT_TRACK", "1")
    env.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    if quiet:
        env.setdefault("PREFECT_LOGGING_LEVEL", "CRITICAL")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def start_group(
    args: list[str],
    env: dict[str, str],
    log: Path,
    cwd: Path | None = None,
    *,
    guarded: bool = False,
) -> subprocess.Popen[bytes]:
    """Start ``args`` in its own process group, output appended to ``log`` (owner-only).

    ``guarded``: through ``devtools.guard``, so the whole group stops when this process dies,
    even by SIGKILL (Linux).
    """
    if guarded:
        args = [sys.executable, "-m", "devtools.guard", *args]
    log.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.chmod(log, 0o600)
    with os.fdopen(fd, "ab") as out:
        return subprocess.Popen(
            args, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def stop_group(pid: int, *, twice: bool = False, timeout_s: float = 15.0) -> None:
    """SIGTERM a process group (twice for Prefect workers), SIGKILL after ``timeout_s``."""
    for sig in (signal.SIGTERM, signal.SIGTERM) if twice else (signal.SIGTERM,):
        try:
            os.killpg(pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(0.5)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                return
        except ChildProcessError:  # not our child (a leftover): poll for its exit
            if not Path(f"/proc/{pid}").exists():
                return
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def wait_http(url: str, timeout_s: float, alive: Callable[[], bool] = lambda: True) -> None:
    """Wait until ``url`` answers below 500; fail early if the serving process died."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError(f"the process serving {url} exited")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status < 500:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not come up within {timeout_s:.0f}s")


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""
