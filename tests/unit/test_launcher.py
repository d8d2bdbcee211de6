"""The API's deployment launcher keeps asking a busy Prefect server (503) to create a run.

Prefect's SQLite store answers 503 only under contention that cannot be produced on demand, so
``run_deployment`` is replaced here by one that raises Prefect's own ``PrefectHTTPStatusError``
from a real httpx 503 response; everything else is the launcher's code.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import prefect.deployments
import pytest
from prefect.exceptions import PrefectHTTPStatusError

from api import launcher
from db.jobs import Job
from entities import get_entity
from tests.helpers import new_job


def _status_error(code: int) -> PrefectHTTPStatusError:
    request = httpx.Request("POST", "http://prefect/api/deployments/x/create_flow_run")
    response = httpx.Response(code, request=request, json={"exception_message": "busy"})
    return PrefectHTTPStatusError.from_httpx_error(
        httpx.HTTPStatusError("busy", request=request, response=response)
    )


class _Run:
    id = uuid.UUID(int=7)


@pytest.fixture
def job() -> Job:
    return new_job(id=uuid.UUID(int=1))


def _launch(monkeypatch: pytest.MonkeyPatch, job: Job, errors: list[int]) -> tuple[Any, list[Any]]:
    calls: list[dict[str, Any]] = []
    slept: list[float] = []

    def run_deployment(**kwargs: Any) -> _Run:
        calls.append(kwargs)
        if errors:
            raise _status_error(errors.pop(0))
        return _Run()

    monkeypatch.setattr(prefect.deployments, "run_deployment", run_deployment)
    monkeypatch.setattr("api.launcher.time.sleep", slept.append)
    result = launcher.DeploymentLauncher().launch(get_entity("voucher"), job)
    return result, [calls, slept]


def test_a_busy_prefect_is_asked_again_with_the_same_idempotency_key(
    monkeypatch: pytest.MonkeyPatch, job: Job
) -> None:
    run_id, (calls, slept) = _launch(monkeypatch, job, [503, 503])
    assert run_id == _Run.id
    assert len(calls) == 3
    assert len({c["idempotency_key"] for c in calls}) == 1  # never a second run
    assert len(slept) == 2 and all(0.5 <= s <= 2.0 for s in slept)


def test_other_errors_fail_the_launch_at_once(monkeypatch: pytest.MonkeyPatch, job: Job) -> None:
    with pytest.raises(PrefectHTTPStatusError):
        _launch(monkeypatch, job, [404])


def test_a_server_busy_past_the_patience_fails_the_launch(
    monkeypatch: pytest.MonkeyPatch, job: Job
) -> None:
    monkeypatch.setattr(launcher, "LAUNCH_PATIENCE_S", 0.0)
    with pytest.raises(PrefectHTTPStatusError):
        _launch(monkeypatch, job, [503, 503])
