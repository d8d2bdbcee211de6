"""Every export ends: faults injected into real processes, then the job row, the stored file,
the temp folder and PostgreSQL's sessions are checked.

A Prefect runner (``fault_runner``, a real process) serves the voucher export deployment;
exports are launched through it as in production (``run_deployment`` with an idempotency key
per attempt) and run as their own processes, which the tests kill, stop and cut off. Exports
stream in small chunks with a short pause so they are still running when the fault comes;
the lease is 2 s so the reaper can act quickly. Waits are safety stops, never timing checks.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

from core.settings import Settings, get_settings
from db import jobs
from db.jobs import Job
from entities import VOUCHERS
from tests.helpers import as_csv_text, read_csv, stored_job

ROOT = Path(__file__).resolve().parent.parent.parent
FAULT_ENV = {
    "EXPORTFLOW_LEASE_S": "2",
    "EXPORTFLOW_LAUNCH_GRACE_S": "60",
    "EXPORTFLOW_CHUNK_BYTES": "4096",
    "EXPORTFLOW_CHUNK_PAUSE_S": "0.15",
    "EXPORTFLOW_RETRY_BACKOFF_S": "0.5",
    "EXPORTFLOW_LOCK_TIMEOUT_S": "2",
    "EXPORTFLOW_MAX_ATTEMPTS": "3",
    # A killed run's concurrency slot stays leased until Prefect's lease (60 s) runs out;
    # these tests are about the reaper, not the bounds (tests/integration/test_limits.py).
    "EXPORTFLOW_MAX_RUNNING_PER_TENANT": "50",
    "EXPORTFLOW_MAX_RUNNING_TOTAL": "50",
}
PARAMETERS = {
    "fields": ["code", "value"],
    "order": "code",
    "validation": False,
    "neutralize_formulas": False,
}


def _wait(check: Any, what: str, seconds: float = 180) -> Any:
    """Poll ``check`` until it returns something truthy (a safety stop, not a timing test)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"gave up waiting for {what}")


@pytest.fixture(scope="module")
def runner(engine: sa.Engine, prefect_server: None) -> Iterator[None]:
    """The runner process serving the deployments, with the fault settings."""
    from prefect.settings import PREFECT_API_URL

    env = {
        **os.environ,
        **FAULT_ENV,
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
        "PYTHONPATH": str(ROOT),
    }
    log = open(Path(os.environ["EXPORTFLOW_HOME"]).parent / "fault_runner.log", "ab")  # noqa: SIM115
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.fault_runner"],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        from prefect import get_client

        def deployed() -> bool:
            with get_client(sync_client=True) as client:
                try:
                    client.read_deployment_by_name("export-vouchers/export-vouchers")
                except Exception:
                    return False
            return True

        _wait(deployed, "the runner's deployments")
        yield
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        log.close()


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch) -> Settings:
    for key, value in FAULT_ENV.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    return get_settings()


def launch(engine: sa.Engine, parameters: dict[str, Any] = PARAMETERS) -> Job:
    """Create a job as the API does and launch its first attempt through the deployment."""
    from api.launcher import DeploymentLauncher

    job = stored_job(channel="API", parameters=parameters)
    run_id = DeploymentLauncher().launch(VOUCHERS, job)
    assert run_id is not None
    jobs.set_flow_run(engine, job.id, run_id)
    return jobs.get_job(engine, job.id)


def job_row(engine: sa.Engine, job: Job) -> Job:
    return jobs.get_job(engine, job.id)


def running_at(engine: sa.Engine, job: Job, attempt: int = 1) -> Job:
    """Wait until ``attempt`` of the job has written some rows but not all."""

    def midway() -> Job | None:
        row = job_row(engine, job)
        assert row.status in ("SCHEDULED", "IN_PROGRESS"), row
        if row.attempt == attempt and row.claimed and row.total and 0 < row.progress < row.total:
            return row
        return None

    return _wait(midway, f"attempt {attempt} mid-stream")


def run_process(run_id: uuid.UUID) -> int:
    """The pid of the process running a flow run (found by its environment)."""

    def find() -> int | None:
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                environ = (proc / "environ").read_bytes()
            except OSError:
                continue
            if f"PREFECT__FLOW_RUN_ID={run_id}".encode() in environ.split(b"\0"):
                return int(proc.name)
        return None

    return _wait(find, f"the process of flow run {run_id}")


def finished(engine: sa.Engine, job: Job, seconds: float = 180) -> Job:
    return _wait(
        lambda: (r := job_row(engine, job)).status not in ("SCHEDULED", "IN_PROGRESS") and r,
        f"export {job.id} to end",
        seconds,
    )


def reap_until_done(engine: sa.Engine, job: Job, settings: Settings) -> Job:
    """Run the maintenance steps (as the every-minute schedule would) until the job ends."""
    from tasks.reaper import reap, remove_orphaned_workdirs

    def ended() -> Job | None:
        reap(engine, settings)
        remove_orphaned_workdirs(engine, settings)
        row = job_row(engine, job)
        return row if row.status not in ("SCHEDULED", "IN_PROGRESS") else None

    done: Job = _wait(ended, f"export {job.id} to end with reaper passes", 240)
    remove_orphaned_workdirs(engine, settings)
    return done


def run_state(run_id: uuid.UUID | None) -> str:
    from prefect import get_client

    assert run_id is not None
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(run_id).state
    return str(state.type.value) if state else ""


def assert_complete_output(job: Job, pg: psycopg.Connection) -> None:
    """The stored file holds the tenant's rows exactly: none lost, none duplicated."""
    assert job.status == "DONE", job
    header, rows = read_csv(job.result["location"])  # type: ignore[index]
    expected = [
        [as_csv_text(v) for v in r]
        for r in pg.execute(
            "SELECT code, value FROM vouchers WHERE tenant_id = 'demo' ORDER BY code, id"
        ).fetchall()
    ]
    assert header == ["code", "value"]
    assert len(rows) == len(expected) == job.result["row_count"]  # type: ignore[index]
    assert rows == expected


def assert_nothing_left(job: Job, pg: psycopg.Connection, *, file: bool) -> None:
    """No temp files, no session of the export, and a file under the final key only if DONE."""
    tmp = get_settings().tmp_path
    _wait(lambda: not list(tmp.glob(f"export-{job.id}-*")), f"export {job.id}'s temp files to go")
    sessions = pg.execute(
        "SELECT pid, state FROM pg_stat_activity WHERE application_name LIKE %s",
        (f"exportflow {job.id}%",),
    ).fetchall()
    assert sessions == []
    stored = list(get_settings().local_storage_path.rglob(f"*{job.id}*"))
    assert len(stored) == (1 if file else 0), stored


def test_kill_9_mid_stream_is_relaunched_and_ends_done(
    runner: None, engine: sa.Engine, pg: psycopg.Connection, settings: Settings
) -> None:
    job = launch(engine)
    midway = running_at(engine, job)
    started = time.monotonic()
    os.kill(run_process(midway.flow_run_id), signal.SIGKILL)  # type: ignore[arg-type]
    done = reap_until_done(engine, job, settings)
    print(
        f"kill -9 at {midway.progress} rows -> {done.status} in {time.monotonic() - started:.1f}s"
    )
    assert done.attempt == 2 and "the worker was lost at" in (done.last_error or "")
    assert_complete_output(done, pg)
    assert_nothing_left(done, pg, file=True)
    assert run_state(midway.flow_run_id) == "CRASHED"


def test_kill_9_on_the_last_attempt_ends_error_saying_what_was_lost(
    runner: None, engine: sa.Engine, pg: psycopg.Connection, settings: Settings
) -> None:
    job = launch(engine)
    midway = running_at(engine, job)
    os.kill(run_process(midway.flow_run_id), signal.SIGKILL)  # type: ignore[arg-type]
    done = reap_until_done(engine, job, Settings(**{**settings.model_dump(), "max_attempts": 1}))
    assert done.status == "ERROR"
    assert done.error is not None
    assert done.error.startswith("the worker was lost at ")
    assert done.error.endswith(f"of {midway.total:,} rows; tried 1 times")
    assert_nothing_left(done, pg, file=False)


def test_connection_terminated_mid_copy_is_retried_with_identical_output(
    runner: None, engine: sa.Engine, pg: psycopg.Connection
) -> None:
    job = launch(engine)
    running_at(engine, job)
    (killed,) = pg.execute(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = %s",
        (f"exportflow {job.id} attempt 1",),
    ).fetchone()
    assert killed == 1
    done = finished(engine, job)
    assert done.attempt == 2, done
    assert "attempt 1:" in (done.last_error or "")
    assert_complete_output(done, pg)
    assert_nothing_left(done, pg, file=True)


def test_an_attempt_stopped_past_its_lease_writes_nothing_after_it_resumes(
    runner: None, engine: sa.Engine, pg: psycopg.Connection, settings: Settings
) -> None:
    job = launch(engine)
    midway = running_at(engine, job)
    old_run = midway.flow_run_id
    pid = run_process(old_run)  # type: ignore[arg-type]
    os.kill(pid, signal.SIGSTOP)
    try:
        done = reap_until_done(engine, job, settings)
    finally:
        os.kill(pid, signal.SIGCONT)
    assert done.attempt == 2 and done.flow_run_id != old_run
    _wait(lambda: not Path(f"/proc/{pid}").exists(), "the old attempt to stop")
    after = job_row(engine, job)
    assert (after.status, after.attempt, after.result) == ("DONE", 2, done.result)
    assert_complete_output(after, pg)
    assert_nothing_left(after, pg, file=True)


def test_a_lock_held_past_lock_timeout_ends_expired_holding_no_session(
    runner: None, engine: sa.Engine, pg: psycopg.Connection, database_url: str
) -> None:
    url = database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url) as locker:
        locker.execute("LOCK TABLE vouchers IN ACCESS EXCLUSIVE MODE")
        job = launch(engine)
        done = finished(engine, job)
        locker.rollback()
    assert done.status == "EXPIRED", done
    assert "lock_timeout of 2 s (EXPORTFLOW_LOCK_TIMEOUT_S)" in (done.error or "")
    assert_nothing_left(done, pg, file=False)


def test_cancel_mid_stream_stops_the_run_and_leaves_nothing(
    runner: None, engine: sa.Engine, pg: psycopg.Connection
) -> None:
    from api.launcher import DeploymentLauncher

    job = launch(engine)
    midway = running_at(engine, job)
    cancelled = jobs.cancel_job(engine, job.id, "cancelled: deleted through the API")
    DeploymentLauncher().cancel(cancelled)
    assert (
        _wait(
            lambda: (
                run_state(midway.flow_run_id) in ("CANCELLED", "FAILED", "COMPLETED", "CRASHED")
                and run_state(midway.flow_run_id)
            ),
            "the run to end",
        )
        == "CANCELLED"
    )
    row = job_row(engine, job)
    assert row.status == "CANCELLED" and row.progress < (row.total or 0)
    assert_nothing_left(row, pg, file=False)


def test_two_reapers_at_once_relaunch_a_lost_export_once(
    runner: None, engine: sa.Engine, pg: psycopg.Connection, settings: Settings
) -> None:
    from tasks.reaper import reap

    job = launch(engine)
    midway = running_at(engine, job)
    os.kill(run_process(midway.flow_run_id), signal.SIGKILL)  # type: ignore[arg-type]
    _wait(
        lambda: (
            job_row(engine, job).lease_expires_at is not None
            and pg.execute(
                "SELECT lease_expires_at < now() FROM export_jobs WHERE id = %s", (job.id,)
            ).fetchone()[0]
        ),
        "the lease to run out",
    )
    results: list[Any] = []
    barrier = threading.Barrier(2)

    def one_reaper() -> None:
        barrier.wait()
        results.append(reap(engine, settings))

    threads = [threading.Thread(target=one_reaper) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    relaunched = [line for r in results for line in r.relaunched if str(job.id) in line]
    assert len(relaunched) == 1, results
    done = finished(engine, job)
    assert done.attempt == 2
    assert_complete_output(done, pg)
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[f"exportflow-job:{job.id}"]))
        )
    assert len(runs) == 2  # the first attempt's run and one relaunch
