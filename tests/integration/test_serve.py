"""``exportflow serve`` (``make serve``) end to end: the production path, with no shortcuts.

A real Prefect server (with its scheduler), ``prefect deploy --all`` of this project's
``prefect.yaml``, a process worker, and the API launching exports with ``run_deployment``.
It also proves that a scheduled deployment really produces a run, and that Ctrl-C stops
everything. The slowest test of the suite (about a minute), and the only one that needs it.
"""

from __future__ import annotations

import os
import queue
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

from api.auth import create_key
from db.jobs import Job, create_job, get_job
from devtools.procs import free_port, port_free
from tests.conftest import TENANT_ROWS

pytestmark = pytest.mark.slow

KEYED_TENANT = "servekeyed"
"""A tenant with an API key and no exports yet: serve makes its concurrency limit at start."""


def _wait(check: Any, what: str, seconds: float = 240) -> Any:
    """Poll ``check`` until it returns something truthy (a safety stop, not a timing test)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"gave up waiting for {what}")


@pytest.fixture(scope="module")
def left_behind(engine: sa.Engine) -> dict[str, Job]:
    """An export a previous serve launched and lost (its launch lease ran out an hour ago);
    ``served`` adds how the job row read the moment serve said "exportflow is up"."""
    job = create_job(
        engine,
        tenant="demo",
        exported_object="voucher",
        format="csv",
        channel="API",
        parameters={"fields": ["code"]},
        launch_grace_s=-3600,
    )
    return {"job": job}


@pytest.fixture(scope="module")
def served(
    engine: sa.Engine, tmp_path_factory: pytest.TempPathFactory, left_behind: dict[str, Job]
) -> Any:
    """``exportflow serve`` in a subprocess on free ports; yields (api url, prefect url, env)."""
    home = tmp_path_factory.mktemp("serve")
    api_port, prefect_port = free_port(), free_port()
    create_key(engine, KEYED_TENANT, name="serve test", app_id="serve-keyed-app")
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
        EXPORTFLOW_DEMO_APP_ID="serve-test-app",
        EXPORTFLOW_DEMO_APP_TOKEN="serve-test-token",
        EXPORTFLOW_SERVE_VOUCHERS=str(TENANT_ROWS),
        PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS="2",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "exportflow", "serve"],
        env=env,
        cwd=Path(__file__).resolve().parent.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    output: list[str] = []

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()

    def up() -> bool:
        if process.poll() is not None:
            raise AssertionError("serve exited:\n" + "".join(output))
        return any("exportflow is up" in line for line in output)

    try:
        _wait(up, "exportflow serve to come up")
        left_behind["at_up"] = get_job(engine, left_behind["job"].id)
        env["PREFECT_API_URL"] = f"http://127.0.0.1:{prefect_port}/api"
        yield f"http://127.0.0.1:{api_port}", env, process, output
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()


def test_api_export_runs_through_the_deployment_and_worker(
    served: Any, pg: psycopg.Connection
) -> None:
    api, env, _, _ = served
    headers = {"X-App-Id": "serve-test-app", "X-App-Token": "serve-test-token"}
    worker_log = Path(env["EXPORTFLOW_HOME"]) / "logs" / "worker.log"
    with httpx.Client(base_url=api, headers=headers, timeout=30) as client:
        nudged = worker_log.read_text().count("prefect.worker.nudge - nudged: ")
        freed = worker_log.read_text().count("prefect.worker.nudge - a slot freed: polled")
        created = client.post(
            "/v1/exports",
            json={"exported_object": "voucher", "parameters": {"fields": ["code", "value"]}},
        )
        assert created.status_code == 200, created.text
        export_id = created.json()["id"]

        def finished() -> dict[str, Any] | None:
            body: dict[str, Any] = client.get(f"/v1/exports/{export_id}").json()
            return body if body["status"] in ("DONE", "ERROR") else None

        export = _wait(finished, "the deployment run")
        assert export["status"] == "DONE", export
        file = client.get(export["result"]["url"])
    (rows,) = pg.execute("SELECT count(*) FROM vouchers WHERE tenant_id = 'demo'").fetchone()
    assert file.status_code == 200
    assert len(file.text.strip().splitlines()) == rows + 1 == TENANT_ROWS + 1
    (run_id,) = pg.execute(
        "SELECT flow_run_id FROM export_jobs WHERE id = %s", (export_id,)
    ).fetchone()
    assert run_id is not None  # a real flow run of the deployment claimed the job
    # the API woke the warm worker (``core.nudge``); it polled at once, or left the run to the
    # poll when a slot frees if every slot was taken (the schedule's maintenance, say)
    assert worker_log.read_text().count("prefect.worker.nudge - nudged: ") > nudged
    # and the run's end gave its slot back, which polled the pool at once (a run waiting for a
    # slot starts then, not at the next regular poll)
    _wait(
        lambda: worker_log.read_text().count("prefect.worker.nudge - a slot freed: polled") > freed,
        "the worker's poll when the run gave its slot back",
    )


def test_serve_reaps_what_a_previous_serve_left_before_it_is_up(
    served: Any, engine: sa.Engine, left_behind: dict[str, Job]
) -> None:
    """The startup sweep (one maintenance run before "exportflow is up") relaunched the lost
    export at once -- not on the schedule's first tick -- and the new attempt finishes it."""
    _, _, _, output = served
    sweep = [line for line in output if "startup sweep" in line]
    assert sweep and "COMPLETED" in sweep[0], "".join(output)
    at_up = left_behind["at_up"]
    assert at_up.attempt == 2, at_up  # relaunched by the sweep before serve said it was up
    job = left_behind["job"]
    done = _wait(
        lambda: (j := get_job(engine, job.id)).status in ("DONE", "ERROR") and j,
        "the relaunched attempt",
    )
    assert done.status == "DONE", done
    assert done.result and done.result["row_count"] == TENANT_ROWS


def test_serve_makes_the_limits_of_every_keyed_tenant_at_start(served: Any) -> None:
    """A tenant's first export does not have to create its Prefect concurrency limit."""
    _, env, _, _ = served
    limits = httpx.post(f"{env['PREFECT_API_URL']}/v2/concurrency_limits/filter", json={})
    limits.raise_for_status()
    by_name = {limit["name"]: limit["limit"] for limit in limits.json()}
    assert by_name.get(f"exportflow-tenant-{KEYED_TENANT}", 0) >= 1
    assert "exportflow-tenant-demo" in by_name and "exportflow-exports" in by_name


def test_a_scheduled_deployment_really_produces_a_run(served: Any, pg: psycopg.Connection) -> None:
    _, env, _, _ = served
    prefect = str(Path(sys.executable).with_name("prefect"))
    subprocess.run(
        [
            prefect,
            "deployment",
            "schedule",
            "create",
            "export-orders/nightly-orders",
            "--interval",
            "5",
        ],
        env=env,
        check=True,
        capture_output=True,
    )

    def scheduled_job() -> tuple[Any, ...] | None:
        row = pg.execute(
            "SELECT status, parameters, error FROM export_jobs WHERE channel = 'SCHEDULE'"
            " AND exported_object = 'order' AND status IN ('DONE', 'ERROR') LIMIT 1"
        ).fetchone()
        return tuple(row) if row else None

    status, parameters, error = _wait(scheduled_job, "a scheduled run")
    assert status == "DONE", error
    assert parameters["filters"]["created_at"]["conditions"]["$after"] == "-P1D"


def test_each_deployment_form_is_typed_for_its_entity(served: Any) -> None:
    """The run form the UI renders is the deployed schema: enums, descriptions, no job id."""
    from entities import ENTITIES

    _, env, _, _ = served
    api = env["PREFECT_API_URL"]
    deployments = httpx.post(f"{api}/deployments/filter", json={}, timeout=30).json()
    by_name = {d["name"]: d for d in deployments}
    for entity in ENTITIES.values():
        schema = by_name[entity.flow_name]["parameter_openapi_schema"]
        assert schema["required"] == ["tenant"], entity.name
        assert "job_id" not in schema["properties"]
        model = schema["definitions"][entity.parameters_model.__name__]
        fields = model["properties"]["fields"]["anyOf"][0]["items"]
        names = fields["anyOf"][0]["enum"] if "anyOf" in fields else fields["enum"]
        assert names == list(entity.fields)
        orders = model["properties"]["order"]["anyOf"][0]["enum"]
        assert f"-{entity.default_order}" in orders
        assert all(p.get("description") for p in model["properties"].values()), entity.name


def _last_api_export(pg: psycopg.Connection) -> tuple[Any, Any]:
    """(job id, flow run id) of the newest export the API ran to DONE through the worker
    (on its first attempt: not the one the startup sweep relaunched)."""
    row = pg.execute(
        "SELECT id, flow_run_id FROM export_jobs WHERE channel = 'API' AND status = 'DONE'"
        " AND attempt = 1 ORDER BY finished_at DESC LIMIT 1"
    ).fetchone()
    assert row is not None  # left by test_api_export_runs_through_the_deployment_and_worker
    return row[0], row[1]


def test_runs_and_artifacts_of_a_deployment_run_are_readable(
    served: Any, pg: psycopg.Connection
) -> None:
    _, env, _, _ = served
    api = env["PREFECT_API_URL"]
    job_id, run_id = _last_api_export(pg)
    run = httpx.get(f"{api}/flow_runs/{run_id}", timeout=30).json()
    assert run["name"] == f"voucher-demo-{str(job_id)[:8]}"
    assert {"api", "entity:voucher", "tenant:demo"} <= set(run["tags"])
    artifacts = httpx.post(
        f"{api}/artifacts/filter",
        json={"artifacts": {"flow_run_id": {"any_": [str(run_id)]}}},
        timeout=30,
    ).json()
    assert {a["key"] for a in artifacts} >= {
        "voucher-demo-progress",
        "voucher-demo-download",
        "voucher-demo-result",
        "voucher-demo-quality",
    }


def test_a_worker_run_sends_its_events_but_no_flow_run_heartbeats(
    served: Any, pg: psycopg.Connection
) -> None:
    """The forked engine runs with Prefect's flow-run heartbeats off (``deployments.worker``:
    their thread kept each process ~0.5 s past its end); the run's other events still reach
    Prefect (the control: its Running and Completed events are found the same way)."""
    _, env, _, _ = served
    api = env["PREFECT_API_URL"]
    _, run_id = _last_api_export(pg)
    resource = f"prefect.flow-run.{run_id}"

    def names() -> set[str]:
        body = {"filter": {"any_resource": {"id": [resource]}}, "limit": 50}
        page = httpx.post(f"{api}/events/filter", json=body, timeout=30)
        page.raise_for_status()
        return {e["event"] for e in page.json()["events"]}

    seen = _wait(
        lambda: (n := names()) >= {"prefect.flow-run.Running", "prefect.flow-run.Completed"} and n,
        "the run's state events",
        60,
    )
    assert "prefect.flow-run.heartbeat" not in seen, seen


def test_a_worker_runs_events_name_its_flow_deployment_queue_and_pool(
    served: Any, pg: psycopg.Connection
) -> None:
    """Two exports in a row: the second run is handed the objects the worker keeps read
    (``deployments.worker.RelatedObjects``) instead of reading them, and its task runs' events
    still name the run's flow, deployment, work queue and work pool, as Prefect labels them;
    the task runs are recorded from those events, Completed."""
    api, env, _, _ = served
    prefect_api = env["PREFECT_API_URL"]
    headers = {"X-App-Id": "serve-test-app", "X-App-Token": "serve-test-token"}
    with httpx.Client(base_url=api, headers=headers, timeout=30) as client:

        def export_done() -> str:
            export_id = client.post("/v1/exports", json={"exported_object": "voucher"}).json()["id"]
            url = f"/v1/exports/{export_id}"
            _wait(lambda: client.get(url).json()["status"] == "DONE", "an export")
            return str(export_id)

        export_done()
        export_id = export_done()
    (run_id,) = pg.execute(
        "SELECT flow_run_id FROM export_jobs WHERE id = %s", (export_id,)
    ).fetchone()
    run = httpx.get(f"{prefect_api}/flow_runs/{run_id}", timeout=30).json()
    deployment = httpx.get(f"{prefect_api}/deployments/{run['deployment_id']}", timeout=30).json()
    flow = httpx.get(f"{prefect_api}/flows/{run['flow_id']}", timeout=30).json()
    queue_ = httpx.get(f"{prefect_api}/work_queues/{run['work_queue_id']}", timeout=30).json()
    pool = httpx.get(f"{prefect_api}/work_pools/{run['work_pool_name']}", timeout=30).json()
    expected = {
        "flow": (f"prefect.flow.{flow['id']}", flow["name"]),
        "deployment": (f"prefect.deployment.{deployment['id']}", deployment["name"]),
        "work-queue": (f"prefect.work-queue.{queue_['id']}", queue_["name"]),
        "work-pool": (f"prefect.work-pool.{pool['id']}", pool["name"]),
    }

    def task_run_events() -> list[dict[str, Any]]:
        body = {"filter": {"any_resource": {"id": [f"prefect.flow-run.{run_id}"]}}, "limit": 50}
        page = httpx.post(f"{prefect_api}/events/filter", json=body, timeout=30)
        page.raise_for_status()
        events = page.json()["events"]
        return [e for e in events if e["event"] == "prefect.task-run.Completed"]

    events = _wait(task_run_events, "the run's task-run events", 60)
    for event in events:
        named = {
            r["prefect.resource.role"]: (r["prefect.resource.id"], r.get("prefect.resource.name"))
            for r in event["related"]
        }
        assert {role: named.get(role) for role in expected} == expected, event["related"]

    def task_runs() -> dict[str, dict[str, Any]] | None:
        # recorded from those events in bulk, at least once a second (serve's tuning)
        body = {"flow_runs": {"id": {"any_": [str(run_id)]}}}
        page = httpx.post(f"{prefect_api}/task_runs/filter", json=body, timeout=30)
        page.raise_for_status()
        found = {t["name"].rsplit("-", 1)[0]: t for t in page.json()}
        done = len(found) == 2 and {t["state_type"] for t in found.values()} == {"COMPLETED"}
        return found if done else None

    runs = _wait(task_runs, "the run's task runs", 60)
    assert {name: t["state_type"] for name, t in runs.items()} == {
        "write-export-file": "COMPLETED",
        "store-export-file": "COMPLETED",
    }
    # The run graph's edge: the file stored is the write task's result (the pipeline quotes
    # the job and the plan, never what one task hands the next).
    produced = runs["store-export-file"]["task_inputs"]["produced"]
    assert [i["id"] for i in produced] == [runs["write-export-file"]["id"]]


def test_the_worker_reads_ahead_what_the_first_runs_events_name(
    served: Any, pg: psycopg.Connection
) -> None:
    """What the warm worker keeps reading from its start (``keep_related_fresh``, which
    retries shortly while the pool has no deployments) is everything a run of any of the
    pool's deployments would otherwise read for its events."""
    from types import SimpleNamespace

    import anyio
    from prefect.client.orchestration import PrefectClient
    from prefect.client.schemas.objects import FlowRun
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from deployments.worker import RelatedObjects, keep_related_fresh

    _, env, _, _ = served
    _, run_id = _last_api_export(pg)
    related = RelatedObjects("exportflow")

    async def kept() -> tuple[FlowRun, list[Any]]:
        async with PrefectClient(env["PREFECT_API_URL"]) as client:
            run = await client.read_flow_run(run_id)
            deployments = await client.read_deployments()
        with anyio.move_on_after(30):
            async with anyio.create_task_group() as group:
                group.start_soon(keep_related_fresh, SimpleNamespace(related=related))
                while len(related.known(run)) < 4:
                    await anyio.sleep(0.1)
                group.cancel_scope.cancel()
        return run, deployments

    with temporary_settings({PREFECT_API_URL: env["PREFECT_API_URL"]}):
        run, deployments = anyio.run(kept)
    known = related.known(run)
    assert set(known) == set(related.wanted(run))
    assert known[f"deployment.{run.deployment_id}"][1].id == run.deployment_id
    assert known["work-pool.exportflow"][1].name == "exportflow"
    assert len(deployments) >= 9  # every entity's, the maintenance's
    for deployment in deployments:  # a run of any of them finds all four
        other = FlowRun(
            flow_id=deployment.flow_id,
            deployment_id=deployment.id,
            work_queue_id=run.work_queue_id,
        )
        assert len(related.known(other)) == 4, deployment.name


def test_a_worker_run_streams_the_snapshot_its_head_start_opened(
    served: Any, pg: psycopg.Connection
) -> None:
    """The forked run of an API export opened its snapshot and sent its query while Prefect
    was starting it (``tasks.headstart``), and the pipeline streamed that one: the run's log
    says so (its own count would otherwise run after the claim)."""
    _, env, _, _ = served
    api = env["PREFECT_API_URL"]
    _, run_id = _last_api_export(pg)

    def said() -> list[str]:
        body = {"logs": {"flow_run_id": {"any_": [str(run_id)]}}, "limit": 200}
        page = httpx.post(f"{api}/logs/filter", json=body, timeout=30)
        page.raise_for_status()
        messages = [str(log["message"]) for log in page.json()]
        return messages if any(" DONE: " in m for m in messages) else []

    messages = _wait(said, "the run's logs", 60)
    assert any("streamed the snapshot opened ahead (head start)" in m for m in messages), messages


def test_prefect_ui_follows_the_configured_port(served: Any) -> None:
    _, env, _, _ = served
    prefect_url = f"http://127.0.0.1:{env['EXPORTFLOW_PREFECT_PORT']}"
    ui = httpx.get(f"{prefect_url}/ui-settings", timeout=30).json()
    assert ui["api_url"] == f"{prefect_url}/api"
    assert httpx.get(f"{ui['api_url']}/health", timeout=30).status_code == 200


def test_ctrl_c_stops_everything_serve_started(served: Any) -> None:
    api, env, process, output = served
    process.send_signal(signal.SIGINT)
    assert process.wait(60) == 0, "".join(output)
    api_port = int(api.rsplit(":", 1)[1])
    prefect_port = int(env["EXPORTFLOW_PREFECT_PORT"])
    assert port_free("127.0.0.1", api_port) and port_free("127.0.0.1", prefect_port)
    assert not (Path(env["EXPORTFLOW_HOME"]) / "serve.pids").exists()
