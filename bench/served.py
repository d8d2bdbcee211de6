"""The deployment path, measured: ``exportflow serve`` started for the bench, exports via its API.

Every export here is what a user's ``POST /v1/exports`` does on ``make serve``: the API creates
the job and a flow run of the entity's deployment; the worker picks it up and starts the run
(forked from its warm parent); the flow streams, stores and records DONE. Where the time went
comes from three records that exist anyway: the job row (created, started, finished), the flow
run's state history (PENDING when the worker took it, RUNNING when the engine began) and the
pipeline's DONE log line (count, stream, store seconds; peak RSS and private memory).
"""

from __future__ import annotations

import json
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from devtools.procs import free_port, start_group, stop_group

TOKEN = "bench-secret-token-for-make-bench"


def app_id(tenant: str) -> str:
    """The bench's API key id for ``tenant`` (token: ``TOKEN``)."""
    return f"{tenant}-bench-app"


DONE_COSTS = re.compile(r"(?P<name>count|first_row|stream|store) (?P<s>[0-9.]+) s")
DONE_MEMORY = re.compile(r"peak RSS (?P<peak>[0-9.]+) MB(?:, private (?P<private>[0-9.]+) MB)?")


@dataclass
class Served:
    """A running ``exportflow serve``."""

    process: subprocess.Popen[bytes]
    api: str
    prefect_api: str
    log: Path
    up_s: float

    def stop(self) -> None:
        stop_group(self.process.pid)


def start(env: dict[str, str], home: Path, root: Path, timeout_s: float = 900) -> Served:
    """Start ``exportflow serve`` on free ports and wait for "exportflow is up"."""
    prefect_port, api_port = free_port(), free_port()
    env = {
        **env,
        "EXPORTFLOW_PREFECT_PORT": str(prefect_port),
        "EXPORTFLOW_API_PORT": str(api_port),
        # serve's own demo tenants: a few rows are enough, the bench exports tenant "bench"
        "EXPORTFLOW_SERVE_VOUCHERS": "1000",
        "EXPORTFLOW_RATE_LIMIT_PER_WINDOW": "1000000",
        # the flows' INFO lines (the DONE line with the costs) must reach the Prefect API
        "PREFECT_LOGGING_LEVEL": "INFO",
    }
    # A fresh Prefect database: runs left SCHEDULED by an interrupted bench would be picked up
    # (and marked Late) in the middle of this one.
    shutil.rmtree(home / "prefect", ignore_errors=True)
    log = home / "serve.log"
    log.write_bytes(b"")
    started = time.perf_counter()
    process = start_group([sys.executable, "-m", "exportflow", "serve"], env, log, cwd=root)
    deadline = time.monotonic() + timeout_s
    while "exportflow is up" not in log.read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            stop_group(process.pid)
            raise RuntimeError(f"exportflow serve did not come up; see {log}")
        time.sleep(0.2)
    return Served(
        process,
        f"http://127.0.0.1:{api_port}",
        f"http://127.0.0.1:{prefect_port}/api",
        log,
        time.perf_counter() - started,
    )


def _http(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
    request = urllib.request.Request(
        url,
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    with urllib.request.urlopen(request, timeout=600) as response:
        text = response.read()
    return json.loads(text) if text else None


def _auth(tenant: str) -> dict[str, str]:
    return {"X-App-Id": app_id(tenant), "X-App-Token": TOKEN}


def post(served: Served, body: dict[str, Any], tenant: str) -> dict[str, Any]:
    job: dict[str, Any] = _http("POST", f"{served.api}/v1/exports", body, _auth(tenant))
    job["_tenant"] = tenant
    return job


def wait_done(
    served: Served, job: dict[str, Any], poll_s: float, timeout_s: float
) -> dict[str, Any]:
    """Poll the export until it is DONE (or fail on ERROR / timeout)."""
    deadline = time.monotonic() + timeout_s
    url, auth = f"{served.api}/v1/exports/{job['id']}", _auth(job["_tenant"])
    job_id = job["id"]
    while True:
        job = _http("GET", url, None, auth)
        if job["status"] == "DONE":
            return job
        if job["status"] == "ERROR" or time.monotonic() > deadline:
            raise RuntimeError(f"export {job_id} ended {job['status']}: {job.get('error')}")
        time.sleep(poll_s)


def refusal_s(served: Served, tenant: str, repeats: int = 5) -> float:
    """Median seconds for the API to refuse a request naming an unknown field."""
    body = {"exported_object": "voucher", "parameters": {"fields": ["code", "secret"]}}
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        try:
            post(served, body, tenant)
        except urllib.error.HTTPError as exc:
            if exc.code not in (400, 422):
                raise
        else:
            raise RuntimeError("the API accepted an unknown field")
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def small_export_body(cutoff: str, i: int) -> dict[str, Any]:
    """A default voucher export of the rows created after ``cutoff``; ``i`` makes it distinct
    (an identical active export would be returned instead of a new one) without changing rows."""
    before = f"2100-01-01T{i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d}Z"
    return {
        "exported_object": "voucher",
        "parameters": {
            "order": "-created_at",
            "filters": {"created_at": {"conditions": {"$after": cutoff, "$before": before}}},
        },
    }


def _parse_time(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def parse_done_line(message: str) -> dict[str, float]:
    """``count_s``, ``stream_s``, ``store_s``, ``peak_rss_mb``, ``private_mb`` from the
    pipeline's DONE log line (keys absent when the line lacks them)."""
    out = {f"{m['name']}_s": float(m["s"]) for m in DONE_COSTS.finditer(message)}
    memory = DONE_MEMORY.search(message)
    if memory:
        out["peak_rss_mb"] = float(memory["peak"])
        if memory["private"]:
            out["private_mb"] = float(memory["private"])
    return out


def breakdown(
    posted_at: float,
    job: dict[str, Any],
    states: dict[str, float],
    costs: dict[str, float],
) -> dict[str, float]:
    """Where one export's time went, POST to DONE, in seconds.

    ``job`` has ``created_at``, ``started_at``, ``finished_at`` (epoch seconds); ``states`` the
    first time the flow run entered PENDING (the worker took it) and RUNNING (the engine began);
    ``costs`` what ``parse_done_line`` read.
    """
    created, started, finished = job["created_at"], job["started_at"], job["finished_at"]
    pending = states.get("PENDING", created)
    running = states.get("RUNNING", pending)
    count, stream, store = (
        costs.get("count_s", 0.0),
        costs.get("stream_s", 0.0),
        costs.get("store_s", 0.0),
    )
    return {
        "api_s": created - posted_at,
        "queue_wait_s": pending - created,
        "process_start_s": running - pending,
        "run_setup_s": started - running,
        "count_s": count,
        "first_row_s": costs.get("first_row_s", 0.0),
        "stream_s": stream,
        "store_s": store,
        "finish_s": max(finished - started - count - stream - store, 0.0),
        "run_s": finished - pending,
        "total_s": finished - posted_at,
    }


class Recorder:
    """Reads the job row, the flow run's states and its DONE line for a finished export."""

    def __init__(self, served: Served, engine: Any) -> None:
        self.served = served
        self.engine = engine

    def job_times(self, job_id: str) -> tuple[dict[str, float], str | None]:
        import sqlalchemy as sa

        with self.engine.connect() as conn:
            row = conn.execute(
                sa.text(
                    "SELECT created_at, started_at, finished_at, flow_run_id FROM export_jobs"
                    " WHERE id = :id"
                ),
                {"id": job_id},
            ).one()
        times = {
            "created_at": row.created_at.timestamp(),
            "started_at": row.started_at.timestamp(),
            "finished_at": row.finished_at.timestamp(),
        }
        return times, str(row.flow_run_id) if row.flow_run_id else None

    def states(self, flow_run_id: str) -> dict[str, float]:
        found: dict[str, float] = {}
        history = _http(
            "GET", f"{self.served.prefect_api}/flow_run_states/?flow_run_id={flow_run_id}"
        )
        for state in sorted(history, key=lambda s: s["timestamp"]):
            found.setdefault(state["type"], _parse_time(state["timestamp"]))
        return found

    def done_line(self, flow_run_id: str) -> str:
        body = {"logs": {"flow_run_id": {"any_": [flow_run_id]}}, "limit": 200}
        for _ in range(50):  # logs reach the API in batches, shortly after the run
            for log in _http("POST", f"{self.served.prefect_api}/logs/filter", body):
                if " DONE: " in log["message"]:
                    return str(log["message"])
            time.sleep(0.2)
        return ""

    def record(self, posted_at: float, job_id: str) -> dict[str, Any]:
        times, flow_run_id = self.job_times(job_id)
        states = self.states(flow_run_id) if flow_run_id else {}
        costs = parse_done_line(self.done_line(flow_run_id)) if flow_run_id else {}
        return {**breakdown(posted_at, times, states, costs), **costs, "flow_run_id": flow_run_id}


def export(
    served: Served,
    recorder: Recorder,
    body: dict[str, Any],
    tenant: str,
    poll_s: float,
    timeout_s: float,
) -> dict[str, Any]:
    """One export through the API, waited for; its breakdown and result."""
    posted_at = time.time()
    job = post(served, body, tenant)
    done = wait_done(served, job, poll_s, timeout_s)
    return {**recorder.record(posted_at, job["id"]), "result": done["result"], "id": job["id"]}


def burst(
    served: Served, bodies: list[dict[str, Any]], tenant: str, timeout_s: float
) -> tuple[float, list[float]]:
    """Submit all at once (one thread each); seconds until the last is DONE, and each one's."""
    posted: dict[int, float] = {}
    ids: dict[int, dict[str, Any]] = {}
    errors: list[BaseException] = []

    def submit(i: int, body: dict[str, Any]) -> None:
        try:
            posted[i] = time.time()
            ids[i] = post(served, body, tenant)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=submit, args=(i, b)) for i, b in enumerate(bodies)]
    first = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    finished = {}
    for i, job in ids.items():
        done = wait_done(served, job, 0.5, timeout_s)
        finished[i] = _parse_time(done["finished_at"])
    return max(finished.values()) - first, [finished[i] - posted[i] for i in sorted(ids)]
