"""``make serve``: the whole service on one machine, stopped by Ctrl-C.

Starts (in order) the embedded PostgreSQL (or uses ``DATABASE_URL``) with sample data, a
Prefect server with its UI, the process work pool and the deployments of ``prefect.yaml``
(``prefect --no-prompt deploy --all``), ``EXPORTFLOW_WORKERS`` workers (default 1), and the
exports API (uvicorn); then prints
the URLs and demo API keys. Child processes run in their own process groups and are recorded
in ``<home>/serve.pids``: a later start stops what a crashed one left behind (only processes
whose command line is still one of ours) before it checks that the ports are free.

Before it says "exportflow is up" it runs the ``maintenance`` deployment once and waits for
that run (``start_sweep``): exports a previous serve left running are reaped at once.

Supervision: each child runs under ``devtools.guard`` (its group stops when this process dies,
even by SIGKILL); a worker or API that exits is restarted (up to ``MAX_RESTARTS`` times), and
if the Prefect server exits everything stops with a message. The ``maintenance`` deployment's
schedule runs the reaper every minute, so exports in flight when serve died are relaunched
(or failed) after a restart.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from core.settings import Settings, get_settings
from deployments import missing_deployments
from devtools.procs import cmdline, port_free, prefect_defaults, start_group, stop_group, wait_http

if TYPE_CHECKING:
    import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
STOP_TIMEOUT_S = 15.0
MAX_RESTARTS = 5
RESTARTABLE = ("worker", "api")


def _say(message: str) -> None:
    print(f"[serve] {message}", flush=True)


def _pidfile(settings: Settings) -> Path:
    return settings.home.resolve() / "serve.pids"


def stop_stale(settings: Settings) -> None:
    """Stop the process groups a previous (crashed) ``serve`` recorded, if still ours."""
    pidfile = _pidfile(settings)
    if not pidfile.exists():
        return
    try:
        recorded = json.loads(pidfile.read_text())
    except ValueError:
        recorded = []
    for entry in recorded:
        pid, marker = int(entry["pid"]), str(entry["marker"])
        if marker and marker in cmdline(pid):
            _say(f"stopping leftover {entry['name']} (pid {pid}) of an earlier run")
            stop_group(pid, twice=True)
    pidfile.unlink(missing_ok=True)


class Services:
    """The child processes, stopped in reverse order."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.children: list[tuple[str, subprocess.Popen[bytes], str]] = []
        self.commands: dict[str, tuple[list[str], dict[str, str], str]] = {}
        self.restarts: dict[str, int] = {}

    def start(self, name: str, args: list[str], env: dict[str, str], marker: str) -> None:
        log = self.settings.home.resolve() / "logs" / f"{name}.log"
        process = start_group(args, env, log, cwd=ROOT, guarded=True)
        self.commands[name] = (args, env, marker)
        self.children = [c for c in self.children if c[0] != name]
        self.children.append((name, process, marker))
        _pidfile(self.settings).write_text(
            json.dumps([{"name": n, "pid": p.pid, "marker": m} for n, p, m in self.children])
        )

    def dead(self) -> list[str]:
        return [n for n, p, _ in self.children if p.poll() is not None]

    def restart(self, name: str) -> bool:
        """Start ``name`` again if it may be restarted (and has not been too often)."""
        count = self.restarts.get(name, 0)
        if not name.startswith(RESTARTABLE) or count >= MAX_RESTARTS:
            return False
        self.restarts[name] = count + 1
        process = next(p for n, p, _ in self.children if n == name)
        stop_group(process.pid, twice=True, timeout_s=5)  # whatever of its group is left
        self.start(name, *self.commands[name])
        return True

    def alive(self, name: str) -> bool:
        return any(n == name and p.poll() is None for n, p, _ in self.children)

    def stop(self) -> None:
        for name, process, _ in reversed(self.children):
            if process.poll() is None:
                _say(f"stopping {name}")
                stop_group(process.pid, twice=name.startswith("worker"))
        self.children.clear()
        _pidfile(self.settings).unlink(missing_ok=True)


def _run(args: list[str], env: dict[str, str]) -> None:
    result = subprocess.run(args, env=env, cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:4])} failed:\n{result.stdout}\n{result.stderr}")


def prefect_server_env(env: dict[str, str], settings: Settings) -> dict[str, str]:
    """The Prefect server's environment: its UI talks to the configured port, not 4200.

    The server (``devtools.prefect_server``, as ``prefect server start --port``) binds the
    port but the UI's ``/ui-settings`` is computed from ``PREFECT_SERVER_API_HOST/PORT`` (or
    ``PREFECT_UI_API_URL``): set them all.
    """
    url = f"http://{settings.prefect_host}:{settings.prefect_port}"
    server_env = {k: v for k, v in env.items() if k != "PREFECT_API_URL"}
    server_env.update(
        PREFECT_SERVER_API_HOST=settings.prefect_host,
        PREFECT_SERVER_API_PORT=str(settings.prefect_port),
        PREFECT_UI_API_URL=f"{url}/api",
        PREFECT_UI_URL=url,
    )
    return server_env


def prefect_server_tuning(server_env: dict[str, str]) -> None:
    """Settings of serve's Prefect server (on SQLite, one process) for many short runs, unless
    ``server_env`` says otherwise."""
    # A burst of requests (twenty POSTs, their runs) exhausted the default pool of 5 + 10
    # connections while one held the write lock: every writer then stalled for the 60 s busy
    # timeout. More connections than concurrent requests avoids that.
    server_env.setdefault("PREFECT_SERVER_DATABASE_SQLALCHEMY_POOL_SIZE", "30")
    server_env.setdefault("PREFECT_SERVER_DATABASE_SQLALCHEMY_MAX_OVERFLOW", "30")
    # A run refused an export slot (tasks.limits) asks again after the Retry-After the server
    # gives: the average slot occupancy times the waiters per slot, capped at this many seconds
    # (Prefect's default 30 s: up to 39 s per retry for exports that hold slots for seconds).
    # Every refusal is a write to the store: 1 s here brought SQLite lock storms back.
    server_env.setdefault("PREFECT_SERVER_CONCURRENCY_MAXIMUM_CONCURRENCY_SLOT_WAIT_SECONDS", "2")
    # The task-run recorder (the service that writes the task runs and their states from the
    # runs' events) writes each event in a transaction of its own by default: six per export
    # (two tasks, three states each), 24 statements, ~a quarter of the server's SQL time in a
    # burst of twenty (counted per statement). Recorded in bulk at least once a second instead:
    # 24 -> 4 of those statements per export; a task run's state shows up to 1 s later.
    server_env.setdefault("PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE", "50")
    server_env.setdefault("PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_FLUSH_INTERVAL", "1")


def prefect_client_defaults(env: dict[str, str], server_env: dict[str, str]) -> None:
    """How the Prefect clients of serve's own processes (worker, runs, API) talk to serve's
    Prefect server, unless ``env`` says otherwise.

    They retry a busy server 30 times, not 5: its retryable 503s say "again in 0.25-1 s"
    (``devtools.prefect_server``), and with 5 quick tries a burst's create_flow_run gave up.
    Only here: a lost connection is retried after 2, 4, ... 2**n s, so 30 tries would wait
    forever on a server that is gone -- which under serve cannot happen unnoticed (serve stops
    everything when the Prefect server exits).

    And they skip two questions every new client asks: the server's version (the same Prefect,
    from the same environment) and, unless the server's CSRF protection was turned on, a CSRF
    token (the answer is a 422). A forked run opens a handful of clients: 4-5 requests fewer
    before it is Running.
    """
    env.setdefault("PREFECT_CLIENT_MAX_RETRIES", "30")
    env.setdefault("PREFECT_CLIENT_SERVER_VERSION_CHECK_ENABLED", "false")
    csrf = server_env.get("PREFECT_SERVER_CSRF_PROTECTION_ENABLED", "false")
    if csrf.strip().lower() not in ("1", "true", "yes", "on"):
        env.setdefault("PREFECT_CLIENT_CSRF_SUPPORT_ENABLED", "false")


def _at(api_url: str) -> contextlib.AbstractContextManager[object]:
    """Prefect's client settings aimed at serve's Prefect server (serve's own process has no
    ``PREFECT_API_URL``: only the children it starts get one)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    return temporary_settings({PREFECT_API_URL: api_url})


def _ensure_limits(settings: Settings, api_url: str, engine: sa.Engine) -> None:
    """Create/update the Prefect global concurrency limits: the global one and those of the
    demo tenants and of every tenant with a live API key. A run still creates its tenant's
    limit when it is missing (a key made later); made here, a tenant's first export does not
    pay for it, nor race its neighbours to create it."""
    from api.auth import list_keys
    from tasks.limits import ensure_limits

    tenants = {"demo", "acme"} | {k.tenant for k in list_keys(engine) if k.revoked_at is None}
    with _at(api_url):
        ensure_limits(settings, sorted(tenants))


def _worker(pool: str) -> tuple[list[str], str]:
    """The worker command and its pid-file marker: Prefect's process worker, with flow runs
    forked from a warm parent (``deployments.worker``) instead of a fresh interpreter each;
    ``EXPORTFLOW_WORKER=process``: Prefect's own (a new interpreter per run)."""
    if os.environ.get("EXPORTFLOW_WORKER") == "process":
        prefect = str(Path(sys.executable).with_name("prefect"))
        return [prefect, "worker", "start", "--pool", pool, "--type", "process"], "worker start"
    # At most this many runs at once (EXPORTFLOW_WORKER_LIMIT, default 2): on a small machine
    # twenty runs at once only contend (Prefect's SQLite reports "database is locked"); the
    # rest wait in the pool and start as slots free up.
    limit = os.environ.get("EXPORTFLOW_WORKER_LIMIT", "2")
    args = [sys.executable, "-m", "deployments.worker", "--pool", pool, "--limit", limit]
    # Started with the Prefect server, it warms up meanwhile, then waits for serve's pool.
    args += ["--await-pool", str(int(WORKER_AWAITS_POOL_S))]
    return args, "deployments.worker"


WORKER_AWAITS_POOL_S = 300.0
"""How long a worker started beside the Prefect server waits for the pool serve creates."""


def _wait_worker(api: str, pool: str, alive: Callable[[], bool], timeout_s: float = 300) -> None:
    """Wait until the pool has a worker online: ours polls only once its fork server is warm,
    so the first export after "exportflow is up" starts as fast as the later ones."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError("the worker exited while warming up; see its log")
        with (
            contextlib.suppress(OSError, ValueError),
            urllib.request.urlopen(f"{api}/work_pools/{pool}", timeout=5) as response,
        ):
            if json.load(response).get("status") == "READY":
                return
        time.sleep(0.5)
    raise RuntimeError(f"no worker came online for pool {pool} within {timeout_s:.0f}s")


STARTUP_SWEEP_TIMEOUT_S = 120.0


def start_sweep(api: str) -> uuid.UUID:
    """Start one run of the ``maintenance`` deployment now (``run_deployment``, as every
    launch in the project); returns its flow run id.

    Its schedule runs it every minute; this run, at start, reaps at once the exports that a
    previous serve left running when it died (relaunched or failed, with their temp files and
    uploads) instead of up to a minute after "exportflow is up". It is also the first run the
    worker takes: the path every export's run takes (Prefect's worker, its fork server, the
    server's flow-run states) is used once before the first export, which is then no slower
    than the later ones.
    """
    from prefect.deployments import run_deployment

    with _at(api):
        run = run_deployment(
            name="maintain/maintenance", timeout=0, tags=["exportflow", "startup-sweep"]
        )
    return run.id  # type: ignore[union-attr]


def wait_sweep(
    api: str, run_id: uuid.UUID, started: float, timeout_s: float = STARTUP_SWEEP_TIMEOUT_S
) -> tuple[str, float]:
    """Wait for the startup sweep's run to end: (its state type or "TIMEOUT", seconds since
    ``started``, the monotonic time it was started)."""
    from prefect import get_client

    with _at(api), get_client(sync_client=True) as client:
        while time.monotonic() - started < timeout_s:
            state = client.read_flow_run(run_id).state
            if state is not None and state.is_final():
                return str(state.type.value), time.monotonic() - started
            time.sleep(0.2)
    return "TIMEOUT", time.monotonic() - started


def serve() -> None:
    """Bring everything up, print how to use it, and wait for Ctrl-C."""
    settings = get_settings()
    home = settings.home.resolve()
    (home / "logs").mkdir(parents=True, exist_ok=True)
    os.environ["EXPORTFLOW_HOME"] = str(home)
    prefect_defaults(os.environ, home, quiet=False)
    stop_stale(settings)
    for what, host, port in (
        ("Prefect", settings.prefect_host, settings.prefect_port),
        ("API", settings.api_host, settings.api_port),
    ):
        if not port_free(host, port):
            raise SystemExit(
                f"port {host}:{port} ({what}) is in use by another program; stop it or set "
                f"EXPORTFLOW_{'PREFECT' if what == 'Prefect' else 'API'}_PORT"
            )

    _say("database: migrations and sample data")
    from api.auth import create_key
    from db.engine import database_url, get_engine
    from db.migrate import upgrade
    from devtools.sample import create_source_schema, seed

    engine = get_engine()
    upgrade(engine)
    create_source_schema(engine)
    seed(engine, int(os.environ.get("EXPORTFLOW_SERVE_VOUCHERS", "100000")), 2)

    prefect_url = f"http://{settings.prefect_host}:{settings.prefect_port}"
    env = {
        **os.environ,
        "EXPORTFLOW_DATABASE_URL": database_url(),
        "EXPORTFLOW_PROJECT_DIR": str(ROOT),
        "PREFECT_API_URL": f"{prefect_url}/api",
        "PREFECT_UI_URL": prefect_url,  # the run links workers and deploy print
        "EXPORTFLOW_LAUNCHER": "deployment",
        "PYTHONUNBUFFERED": "1",
    }
    # Poll for new runs every 2 s rather than every 15 s: runs created on this machine (the
    # API's, a coordinator's) wake the worker at once (core.nudge), and a freed slot polls at
    # once (deployments.worker), so this poll finds only runs made elsewhere (the UI's Run
    # button, another machine's API, the reaper's relaunches). At 0.5 s an idle serve spent
    # 8.1 s of the Prefect server's CPU a minute answering polls (13% of a core).
    env.setdefault("PREFECT_WORKER_QUERY_SECONDS", "2")
    server_env = prefect_server_env(env, settings)
    prefect_client_defaults(env, server_env)
    prefect_server_tuning(server_env)
    services = Services(settings)
    interrupted = False

    def on_signal(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)  # also when started in the background
    try:
        _say(f"Prefect server on {prefect_url}")
        services.start(
            "prefect-server",
            [
                sys.executable,
                "-m",
                "devtools.prefect_server",  # prefect server start, 503s saying "retry soon"
                "--host",
                settings.prefect_host,
                "--port",
                str(settings.prefect_port),
            ],
            server_env,
            "devtools.prefect_server",
        )
        worker_args, worker_marker = _worker(settings.work_pool)
        warm = worker_marker == "deployments.worker"

        def start_workers() -> None:
            for i in range(1, settings.workers + 1):  # N workers drain the pool's one queue
                name = "worker" if settings.workers == 1 else f"worker-{i}"
                named = [] if settings.workers == 1 else ["--name", f"exportflow-worker-{i}"]
                services.start(name, worker_args + named, env, worker_marker)

        if warm:  # the fork servers preload while Prefect starts (5-6 s of 2 busy cores)
            start_workers()
        wait_http(f"{prefect_url}/api/health", 180, lambda: services.alive("prefect-server"))
        _say(
            f"concurrency limits: {settings.max_running_per_tenant} running exports per tenant,"
            f" {settings.max_running_total} overall"
        )
        _ensure_limits(settings, f"{prefect_url}/api", engine)
        missing = missing_deployments()
        if missing:
            raise RuntimeError(f"prefect.yaml lacks the deployments of: {', '.join(missing)}")
        _say(f"work pool {settings.work_pool} and deployments (prefect deploy --all)")
        pool = ["work-pool", "create", settings.work_pool, "--type=process", "--overwrite"]
        deploy = ["--no-prompt", "deploy", "--all"]
        _run([sys.executable, "-m", "devtools.prefect_cli", *pool, "+", *deploy], env)
        if not warm:
            start_workers()
        _wait_worker(
            f"{prefect_url}/api",
            settings.work_pool,
            lambda: any(
                services.alive(n) for n, _, _ in services.children if n.startswith("worker")
            ),
        )
        sweep_started = time.monotonic()
        sweep = start_sweep(f"{prefect_url}/api")  # runs while the API starts
        api_url = f"http://{settings.api_host}:{settings.api_port}"
        _say(f"exports API on {api_url}")
        services.start(
            "api",
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                "exportflow.web:main_app",
                "--host",
                settings.api_host,
                "--port",
                str(settings.api_port),
            ],
            env,
            "exportflow.web:main_app",
        )
        wait_http(f"{api_url}/healthz", 60, lambda: services.alive("api"))
        outcome, took = wait_sweep(f"{prefect_url}/api", sweep, sweep_started)
        _say(
            f"startup sweep (maintenance run {prefect_url}/runs/flow-run/{sweep}): {outcome}"
            f" in {took:.1f} s"
            + ("" if outcome == "COMPLETED" else "; see its log (it also runs every minute)")
        )
        demo = create_key(
            engine,
            "demo",
            name="make serve demo key",
            app_id=os.environ.get("EXPORTFLOW_DEMO_APP_ID") or "demo-app",
            token=os.environ.get("EXPORTFLOW_DEMO_APP_TOKEN") or None,
        )
        acme = create_key(engine, "acme", name="make serve acme key", app_id="acme-app")
        print(
            f"""
exportflow is up.
  Prefect UI   {prefect_url}
  API docs     {api_url}/docs
  logs         {home / "logs"}

  tenant demo:
    X-App-Id: {demo[0]}
    X-App-Token: {demo[1]}
  tenant acme:
    X-App-Id: {acme[0]}
    X-App-Token: {acme[1]}

  curl -s -X POST {api_url}/v1/exports -H 'X-App-Id: {demo[0]}' \\
       -H 'X-App-Token: {demo[1]}' -H 'Content-Type: application/json' \\
       -d '{{"exported_object": "voucher", "parameters": {{"fields": ["code", "value"]}}}}'

Ctrl-C stops everything.""",
            flush=True,
        )
        while True:
            time.sleep(1)
            dead = services.dead()
            if not dead:
                continue
            if all(services.restart(name) for name in dead):
                _say(f"{', '.join(dead)} exited; restarted (see {home / 'logs'})")
                continue
            break
        _say(
            f"{', '.join(dead)} exited and cannot be restarted; see {home / 'logs'};"
            " stopping the rest"
        )
    except KeyboardInterrupt:
        interrupted = True
        print(flush=True)
    finally:
        services.stop()
    if not interrupted:
        raise SystemExit(1)


def main() -> None:
    try:
        serve()
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
