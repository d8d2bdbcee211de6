"""Serve's start-up steps: the worker that waits for serve's pool, and Prefect CLI commands
run in one interpreter."""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from deployments.worker import wait_for_pool
from devtools.prefect_cli import commands

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def prefect_api() -> Iterator[tuple[str, list[int], list[str]]]:
    """A stand-in Prefect API on a real socket answering each GET with the next status of
    ``answers`` (the last one from then on); yields its URL, the answers and the paths asked."""
    answers: list[int] = []
    asked: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(self.path)
            status = answers.pop(0) if len(answers) > 1 else answers[0]
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/api", answers, asked
    finally:
        server.shutdown()
        server.server_close()


def test_a_worker_started_beside_the_server_waits_for_the_pool(
    prefect_api: tuple[str, list[int], list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    api, answers, asked = prefect_api
    answers += [503, 404, 404, 200]  # starting, then up without the pool, then the pool
    wait_for_pool(api, "exportflow", timeout_s=30, every_s=0.01)
    assert asked == ["/api/work_pools/exportflow"] * 4
    assert capsys.readouterr().out.count("waiting for Prefect") == 1  # said once


def test_a_worker_gives_up_on_a_pool_that_never_comes() -> None:
    with pytest.raises(
        SystemExit, match="gave up after 0s waiting for pool 'nowhere' \\(not up\\)"
    ):
        wait_for_pool("http://127.0.0.1:9/api", "nowhere", timeout_s=0.05, every_s=0.01)


def test_an_answer_prefect_itself_should_report_ends_the_wait(
    prefect_api: tuple[str, list[int], list[str]],
) -> None:
    """A 401 (an API key the worker lacks) is Prefect's setup's to report, not a reason to
    wait out the timeout."""
    api, answers, asked = prefect_api
    answers.append(401)
    wait_for_pool(api, "exportflow", timeout_s=30, every_s=0.01)
    assert len(asked) == 1


def test_prefect_commands_are_split_at_each_plus() -> None:
    argv = ["work-pool", "create", "p", "--type=process", "+", "--no-prompt", "deploy", "--all"]
    assert commands(argv) == [
        ["work-pool", "create", "p", "--type=process"],
        ["--no-prompt", "deploy", "--all"],
    ]
    assert commands(["+", "version", "+", "+"]) == [["version"]]


def test_the_first_failing_prefect_command_stops_the_rest_with_its_code() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "devtools.prefect_cli", "no-such-command", "+", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "prefect no-such-command: failed" in done.stderr
    assert "Prefect CLI for workflow orchestration" not in done.stdout  # --help never ran


def test_serves_prefect_server_settings_are_prefects_and_the_users_win(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every tuning serve gives its Prefect server is a setting Prefect reads (a misspelt name
    would be ignored silently), and a value the user set is kept."""
    from prefect.settings import Settings

    from devtools.serve import prefect_server_tuning

    server_env = {"PREFECT_SERVER_DATABASE_SQLALCHEMY_POOL_SIZE": "7"}
    prefect_server_tuning(server_env)
    assert server_env["PREFECT_SERVER_DATABASE_SQLALCHEMY_POOL_SIZE"] == "7"
    for name, value in server_env.items():
        monkeypatch.setenv(name, value)
    server = Settings().server
    assert server.database.sqlalchemy.pool_size == 7
    assert server.database.sqlalchemy.max_overflow == 30
    assert server.concurrency.maximum_concurrency_slot_wait_seconds == 2
    assert server.services.task_run_recorder.batch_size == 50
    assert server.services.task_run_recorder.flush_interval == 1
