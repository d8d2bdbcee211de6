"""Many workers, one queue, and parallel parts on them: ``exportflow serve`` with two workers.

The production path with no shortcut: a Prefect server, the ``exportflow`` process pool with
``EXPORTFLOW_WORKERS=2`` workers, every deployment of ``prefect.yaml`` (``export-part``
included), and the API launching exports with ``run_deployment``. Slow (a minute or two).
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import sqlalchemy as sa

from devtools.procs import free_port

pytestmark = pytest.mark.slow

HEADERS = {"X-App-Id": "scale-test-app", "X-App-Token": "scale-test-token"}


def _wait(check: Any, what: str, seconds: float = 300) -> Any:
    """Poll ``check`` until it returns something truthy (a safety stop, not a timing test)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"gave up waiting for {what}")


@pytest.fixture(scope="module")
def two_workers(engine: sa.Engine, tmp_path_factory: pytest.TempPathFactory) -> Any:
    home = tmp_path_factory.mktemp("scale")
    api_port, prefect_port = free_port(), free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PREFECT_API_URL", "PREFECT_LOGGING"))
    }
    env.update(
        EXPORTFLOW_HOME=str(home / "home"),
        PREFECT_HOME=str(home / "prefect"),
        EXPORTFLOW_API_PORT=str(api_port),
        EXPORTFLOW_PREFECT_PORT=str(prefect_port),
        EXPORTFLOW_DEMO_APP_ID=HEADERS["X-App-Id"],
        EXPORTFLOW_DEMO_APP_TOKEN=HEADERS["X-App-Token"],
        EXPORTFLOW_SERVE_VOUCHERS="3000",
        EXPORTFLOW_WORKERS="2",
        # parts stream in small chunks with a pause after each: still running when killed
        EXPORTFLOW_CHUNK_BYTES="4096",
        EXPORTFLOW_PART_CHUNK_PAUSE_S="0.1",
        PREFECT_WORKER_QUERY_SECONDS="1",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "exportflow", "serve"],
        env=env,
        cwd=Path(__file__).resolve().parent.parent.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: list[str] = []

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)

    threading.Thread(target=pump, daemon=True).start()

    def up() -> bool:
        if process.poll() is not None:
            raise AssertionError("serve exited:\n" + "".join(output))
        return any("exportflow is up" in line for line in output)

    try:
        _wait(up, "exportflow serve to come up")
        env["PREFECT_API_URL"] = f"http://127.0.0.1:{prefect_port}/api"
        # A POST waits for Prefect to create the flow run; Prefect's SQLite store, under two
        # workers' polls and five runs, has stalled a write for its full 60 s busy timeout
        # (``database is locked``). This test is about the workers, so it allows for that.
        with httpx.Client(
            base_url=f"http://127.0.0.1:{api_port}", headers=HEADERS, timeout=180
        ) as client:
            yield client, env
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(90)
            except subprocess.TimeoutExpired:
                process.kill()


def _post(client: httpx.Client, **parameters: Any) -> str:
    created = client.post(
        "/v1/exports", json={"exported_object": "voucher", "parameters": parameters}
    )
    assert created.status_code == 200, created.text
    return str(created.json()["id"])


def _finished(client: httpx.Client, export_id: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        body: dict[str, Any] = client.get(f"/v1/exports/{export_id}").json()
        return body if body["status"] in ("DONE", "ERROR") else None

    result: dict[str, Any] = _wait(done, f"export {export_id}")
    return result


def _flow_runs(env: dict[str, str], **filters: Any) -> list[Any]:
    code = (
        "import json,sys\n"
        "from prefect import get_client\n"
        "from prefect.client.schemas.filters import FlowRunFilter\n"
        "with get_client(sync_client=True) as c:\n"
        "    runs = c.read_flow_runs(limit=200)\n"
        "print(json.dumps([{'id': str(r.id), 'tags': r.tags, 'state': r.state_type.value,"
        " 'parent': str(r.parent_task_run_id or ''), 'name': r.name,"
        " 'deployment': str(r.deployment_id or '')} for r in runs]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    import json

    runs: list[Any] = json.loads(out.stdout)
    return runs


def test_two_workers_drain_one_queue_running_each_export_once(
    two_workers: Any, pg: psycopg.Connection
) -> None:
    client, env = two_workers
    fields = [["code"], ["code", "value"], ["value"], ["code", "created_at"], ["created_at"]]
    ids = [_post(client, fields=f) for f in fields]

    finished = [_finished(client, i) for i in ids]

    assert [e["status"] for e in finished] == ["DONE"] * len(ids)
    runs = _flow_runs(env)
    for export_id in ids:
        mine = [r for r in runs if f"exportflow-job:{export_id}" in r["tags"]]
        assert [r["state"] for r in mine] == ["COMPLETED"], mine  # one run, run once
    (claims,) = pg.execute(
        "SELECT count(DISTINCT flow_run_id) FROM export_jobs WHERE id = ANY(%s::uuid[])",
        (ids,),
    ).fetchone()
    assert claims == len(ids)


def test_parallel_export_on_two_workers_survives_a_killed_part(
    two_workers: Any, pg: psycopg.Connection
) -> None:
    client, env = two_workers
    fields = ["code", "value", "created_at"]
    single = _finished(client, _post(client, fields=fields, order="-created_at"))
    export_id = _post(client, fields=fields, order="-created_at", parallelism=2)

    def part_streaming() -> Any:
        return pg.execute(
            "SELECT pid FROM export_parts WHERE job_id = %s AND part = 1 AND attempt = 1"
            " AND status = 'RUNNING' AND progress > 0",
            (export_id,),
        ).fetchone()

    (pid,) = _wait(part_streaming, "part 1 to stream on a worker")
    os.kill(pid, signal.SIGKILL)  # the part's flow-run process, mid-stream
    parallel = _finished(client, export_id)

    assert parallel["status"] == "DONE", parallel
    want = client.get(single["result"]["url"]).content
    got = client.get(parallel["result"]["url"]).content
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(want).hexdigest()
    assert parallel["result"]["sha256"] == hashlib.sha256(got).hexdigest()
    (result,) = pg.execute("SELECT result FROM export_jobs WHERE id = %s", (export_id,)).fetchone()
    assert result["parallel"]["part_attempts"] == [1, 2]
    # the parts are child runs of the export's run in the Prefect UI
    runs = _flow_runs(env)
    parts = [r for r in runs if "exportflow-part" in r["tags"] and export_id[:8] in r["name"]]
    assert sorted(r["state"] for r in parts) == ["COMPLETED", "COMPLETED", "CRASHED"], parts
    assert all(r["parent"] for r in parts)
