"""The API's deployment launcher: one read of each deployment, and a busy Prefect server (503)
asked again to create a run.

Prefect's SQLite store answers 503 only under contention that cannot be produced on demand, so
the launcher's Prefect client is replaced here by one that raises Prefect's own
``PrefectHTTPStatusError`` from a real httpx 503 response (404 for a run of a deleted
deployment, ``ObjectNotFound`` for reading one by name, as the real client does); everything
else is the launcher's code. The real client against a real server: ``test_faults``
(``launch``) and ``test_serve`` (the API's exports).
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import prefect
import pytest
from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError

from api import launcher
from db.jobs import Job, job_tag
from entities import get_entity
from tests.helpers import new_job

DEPLOYMENT = "export-vouchers/export-vouchers"


def _status_error(code: int) -> PrefectHTTPStatusError:
    request = httpx.Request("POST", "http://prefect/api/deployments/x/create_flow_run")
    response = httpx.Response(code, request=request, json={"exception_message": "busy"})
    return PrefectHTTPStatusError.from_httpx_error(
        httpx.HTTPStatusError("busy", request=request, response=response)
    )


class _Run:
    id = uuid.UUID(int=7)


class _Deployment:
    def __init__(self, id: uuid.UUID) -> None:
        self.id = id


class _Client:
    """Prefect's sync client as far as the launcher uses it: deployments read by name, runs
    made from them; ``errors`` are raised by the next creates, ``gone`` ids are not found."""

    def __init__(self, errors: list[int]) -> None:
        self.errors = errors
        self.deployment = uuid.UUID(int=100)
        self.gone: set[uuid.UUID] = set()
        self.reads: list[str] = []
        self.creates: list[dict[str, Any]] = []

    def __enter__(self) -> _Client:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def read_deployment_by_name(self, name: str) -> _Deployment:
        self.reads.append(name)
        return _Deployment(self.deployment)

    def create_flow_run_from_deployment(self, deployment_id: uuid.UUID, **kw: Any) -> _Run:
        self.creates.append({"deployment_id": deployment_id, **kw})
        if deployment_id in self.gone:  # what Prefect's client raises there (seen by hand)
            raise _status_error(404)
        if self.errors:
            raise _status_error(self.errors.pop(0))
        return _Run()


@pytest.fixture
def job() -> Job:
    return new_job(id=uuid.UUID(int=1))


def _launch(
    monkeypatch: pytest.MonkeyPatch,
    job: Job,
    client: _Client,
    deployments: launcher.DeploymentLauncher | None = None,
) -> tuple[uuid.UUID | None, list[float]]:
    slept: list[float] = []
    monkeypatch.setattr(prefect, "get_client", lambda **_: client)
    monkeypatch.setattr("api.launcher.time.sleep", slept.append)
    launched = (deployments or launcher.DeploymentLauncher()).launch(get_entity("voucher"), job)
    return launched, slept


def test_a_busy_prefect_is_asked_again_with_the_same_idempotency_key(
    monkeypatch: pytest.MonkeyPatch, job: Job
) -> None:
    client = _Client([503, 503])
    run_id, slept = _launch(monkeypatch, job, client)
    assert run_id == _Run.id
    assert len(client.creates) == 3
    assert len({c["idempotency_key"] for c in client.creates}) == 1  # never a second run
    assert len(slept) == 2 and all(0.5 <= s <= 2.0 for s in slept)


def test_other_errors_fail_the_launch_at_once(monkeypatch: pytest.MonkeyPatch, job: Job) -> None:
    client = _Client([404])
    with pytest.raises(PrefectHTTPStatusError):
        _launch(monkeypatch, job, client)
    assert len(client.creates) == 1


def test_a_server_busy_past_the_patience_fails_the_launch(
    monkeypatch: pytest.MonkeyPatch, job: Job
) -> None:
    monkeypatch.setattr(launcher, "LAUNCH_PATIENCE_S", 0.0)
    with pytest.raises(PrefectHTTPStatusError):
        _launch(monkeypatch, job, _Client([503, 503]))


def test_the_deployment_is_read_once_and_again_only_when_it_is_gone(
    monkeypatch: pytest.MonkeyPatch, job: Job
) -> None:
    client, deployments = _Client([]), launcher.DeploymentLauncher()
    for _ in range(3):
        assert _launch(monkeypatch, job, client, deployments)[0] == _Run.id
    assert client.reads == [DEPLOYMENT]  # not before every run
    assert {c["deployment_id"] for c in client.creates} == {uuid.UUID(int=100)}
    first = client.creates[0]
    assert first["state"].is_scheduled() and job_tag(job.id) in first["tags"]
    assert first["parameters"] == launcher.flow_parameters(job)
    # deleted and deployed again under the same name: a new id, read again, the run made
    client.gone.add(client.deployment)
    client.deployment = uuid.UUID(int=101)
    assert _launch(monkeypatch, job, client, deployments)[0] == _Run.id
    assert client.reads == [DEPLOYMENT] * 2
    assert [c["deployment_id"].int for c in client.creates[-2:]] == [100, 101]
    # gone for good: the launch fails with Prefect's error, not a loop
    client.gone.add(client.deployment)
    with pytest.raises(PrefectHTTPStatusError):
        _launch(monkeypatch, job, client, deployments)
    assert client.reads == [DEPLOYMENT] * 3


def test_a_deployment_deleted_and_not_yet_back_is_read_again_at_the_next_launch(
    monkeypatch: pytest.MonkeyPatch, job: Job
) -> None:
    """Deleted: the launch fails (reading by name finds nothing); deployed again: the next
    launch, which still holds the old id, reads the new one and makes the run."""
    client, deployments = _Client([]), launcher.DeploymentLauncher()
    _launch(monkeypatch, job, client, deployments)
    client.gone.add(client.deployment)

    def nothing_by_name(name: str) -> _Deployment:
        client.reads.append(name)
        raise ObjectNotFound(http_exc=Exception("deployment not found"))

    monkeypatch.setattr(client, "read_deployment_by_name", nothing_by_name)
    with pytest.raises(ObjectNotFound):
        _launch(monkeypatch, job, client, deployments)
    monkeypatch.undo()
    client.deployment = uuid.UUID(int=102)
    assert _launch(monkeypatch, job, client, deployments)[0] == _Run.id
    assert client.creates[-1]["deployment_id"] == uuid.UUID(int=102)


def test_deployments_read_at_start_are_not_read_again_at_their_first_launch(
    monkeypatch: pytest.MonkeyPatch, job: Job
) -> None:
    client, deployments = _Client([]), launcher.DeploymentLauncher()
    monkeypatch.setattr(prefect, "get_client", lambda **_: client)
    missing = "export-customers/export-customers"

    def by_name(name: str) -> _Deployment:
        client.reads.append(name)
        if name == missing:  # not deployed (yet)
            raise ObjectNotFound(http_exc=Exception("deployment not found"))
        return _Deployment(client.deployment)

    monkeypatch.setattr(client, "read_deployment_by_name", by_name)
    deployments.read_ids([get_entity("customer"), get_entity("voucher")])
    assert client.reads == [missing, DEPLOYMENT]
    assert _launch(monkeypatch, job, client, deployments)[0] == _Run.id
    assert client.reads == [missing, DEPLOYMENT]  # the voucher launch read nothing
    with pytest.raises(ObjectNotFound):  # still not deployed: read at its launch, refused
        deployments.launch(get_entity("customer"), job)
    assert client.reads == [missing, DEPLOYMENT, missing]


def test_a_prefect_server_that_does_not_answer_at_start_is_left_to_the_launches(
    monkeypatch: pytest.MonkeyPatch, job: Job
) -> None:
    client, deployments = _Client([]), launcher.DeploymentLauncher()
    monkeypatch.setattr(prefect, "get_client", lambda **_: client)
    reads: list[str] = []

    def unreachable(name: str) -> _Deployment:
        reads.append(name)
        raise httpx.ConnectError("connection refused")

    monkeypatch.setattr(client, "read_deployment_by_name", unreachable)
    deployments.read_ids([get_entity("customer"), get_entity("voucher")])  # does not raise
    assert reads == ["export-customers/export-customers"]  # and stops at the first
    monkeypatch.undo()
    assert _launch(monkeypatch, job, client, deployments)[0] == _Run.id
    assert client.reads == [DEPLOYMENT]


def test_the_api_warms_up_its_routes_and_deployment_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    import sqlalchemy as sa

    from api.app import create_app, warm_up
    from entities import ENTITIES

    client = _Client([])
    monkeypatch.setattr(prefect, "get_client", lambda **_: client)
    engine = sa.create_engine("postgresql+psycopg://nobody@127.0.0.1:9/none")  # never used
    app = create_app(engine, launcher.DeploymentLauncher())
    assert app.openapi_schema is None
    reader = warm_up(app)
    assert app.openapi_schema is not None and "/v1/exports" in app.openapi_schema["paths"]
    assert reader is not None
    reader.join(10)
    assert sorted(client.reads) == sorted(f"{e.flow_name}/{e.flow_name}" for e in ENTITIES.values())

    class Other:  # another launcher (the thread one, a test's): routes only
        def launch(self, entity: Any, job: Job) -> None:
            return None

        def cancel(self, job: Job) -> None:
            return None

    assert warm_up(create_app(engine, Other())) is None
