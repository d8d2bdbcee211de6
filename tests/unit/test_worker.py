"""The warm worker's bookkeeping: what a forked flow run is given (no server, no fork)."""

from __future__ import annotations

import multiprocessing
import uuid
from types import SimpleNamespace
from typing import Any

from core.warmup import complete_models
from deployments.worker import (
    PRELOAD,
    ForkStarter,
    WarmJobConfiguration,
    WarmProcessWorker,
    _prefect_settings,
    settings_environment,
    settings_view,
)


def _starter(env: dict[str, Any]) -> ForkStarter:
    return ForkStarter(
        multiprocessing.get_context("forkserver"), env=env, cwd=None, control_channel=None
    )


def test_a_forked_run_gets_the_environment_an_execd_engine_would() -> None:
    run = SimpleNamespace(id=uuid.uuid4())
    env, registered = _starter(
        {"EXPORTFLOW_CHUNK_BYTES": "1048576", "UNSET_ME": None, "PREFECT__DEPLOYMENT_NAME": "d"}
    ).environment(run)  # type: ignore[arg-type]

    assert env["PREFECT__FLOW_RUN_ID"] == str(run.id)
    assert env["EXPORTFLOW_CHUNK_BYTES"] == "1048576"  # the job's env wins over the worker's
    assert env["PREFECT__DEPLOYMENT_NAME"] == "d"
    assert env["PREFECT__ENABLE_CANCELLATION_AND_CRASHED_HOOKS"] == "false"
    assert "UNSET_ME" not in env
    assert registered is False  # no control channel: kill-only cancellation


def test_only_prefect_settings_decide_whether_a_child_rereads_them() -> None:
    base = {"PREFECT_API_URL": "http://x/api", "PATH": "/bin"}
    assert _prefect_settings({**base, "PREFECT__FLOW_RUN_ID": "1", "HOME": "/r"}) == {
        "PREFECT_API_URL": "http://x/api"
    }
    assert _prefect_settings(base) != _prefect_settings({**base, "PREFECT_API_URL": "http://y"})


def test_the_warm_parent_preloads_the_flows_and_the_child_entry_point() -> None:
    assert PRELOAD == ["deployments.warm", "deployments.worker"]


def test_runs_started_without_heartbeats_get_none_and_the_setting_comes_back() -> None:
    """What the worker's forked runs and ``run_here`` run under (``flows.launch``)."""
    from prefect.settings import get_current_settings

    from flows.launch import without_heartbeats

    before = get_current_settings().flows.heartbeat_frequency
    assert before is not None  # Prefect's default: a heartbeat thread in every run
    with without_heartbeats():
        assert get_current_settings().flows.heartbeat_frequency is None
    assert get_current_settings().flows.heartbeat_frequency == before


def test_a_run_whose_environment_sets_no_other_prefect_setting_keeps_the_inherited_ones() -> None:
    """A forked run compares its environment with the parent's ``settings_view``: the
    environment ``ForkStarter`` gives a run carries exactly those settings, so the run keeps
    the settings it inherited; a job that sets one of its own makes the run read them again."""
    run = SimpleNamespace(id=uuid.uuid4())
    plain, _ = _starter({"EXPORTFLOW_CHUNK_BYTES": "1048576"}).environment(run)  # type: ignore[arg-type]
    assert _prefect_settings(plain) == settings_view()
    own, _ = _starter({"PREFECT_LOGGING_LEVEL": "DEBUG"}).environment(run)  # type: ignore[arg-type]
    assert _prefect_settings(own) != settings_view()


def test_the_settings_environment_is_prefects_computed_once_per_settings_object() -> None:
    from prefect.settings import PREFECT_LOGGING_LEVEL, get_current_settings, temporary_settings

    expected = get_current_settings().to_environment_variables(exclude_unset=True)
    first = settings_environment()
    assert first == expected
    first["PREFECT_API_URL"] = "http://changed-by-a-caller/api"  # each caller gets its own dict
    assert settings_environment() == expected
    assert WarmJobConfiguration._base_environment() == expected  # what each run's job env gets
    with temporary_settings({PREFECT_LOGGING_LEVEL: "DEBUG"}):  # a new settings object
        assert settings_environment()["PREFECT_LOGGING_LEVEL"] == "DEBUG"
    assert settings_environment() == expected


def test_the_warm_worker_keeps_prefects_process_job_template_and_shares_tls_contexts(
    monkeypatch: Any,
) -> None:
    import ssl
    import sys
    from multiprocessing import forkserver

    import prefect._internal.version_checking
    import prefect._internal.websockets
    import prefect.client.orchestration  # noqa: F401  (the modules whose ssl is shared)
    from prefect.workers.process import ProcessWorker

    from core.tls import PREFECT_MODULES, SharedContexts

    assert WarmProcessWorker.job_configuration is WarmJobConfiguration
    template = WarmProcessWorker.get_default_base_job_template()
    assert template == ProcessWorker.get_default_base_job_template()

    for name in PREFECT_MODULES:  # as a fresh process has them; put back after the test
        monkeypatch.setattr(sys.modules[name], "ssl", ssl)
    server = forkserver._forkserver  # type: ignore[attr-defined]
    monkeypatch.setattr(server, "_preload_modules", server._preload_modules)  # the worker sets it
    WarmProcessWorker(work_pool_name="any")
    assert all(isinstance(sys.modules[name].ssl, SharedContexts) for name in PREFECT_MODULES)


def test_the_warm_parent_builds_deferred_pydantic_models(monkeypatch: Any) -> None:
    import sys
    import types

    from pydantic import BaseModel, ConfigDict

    module = types.ModuleType("deferredmodels")

    class Deferred(BaseModel):
        model_config = ConfigDict(defer_build=True)
        n: int

    class Unresolvable(BaseModel):
        model_config = ConfigDict(defer_build=True)
        other: NotDefinedAnywhere  # type: ignore[name-defined]  # noqa: F821

    for model in (Deferred, Unresolvable):
        model.__module__ = module.__name__
        setattr(module, model.__name__, model)
    monkeypatch.setitem(sys.modules, module.__name__, module)
    assert not Deferred.__pydantic_complete__

    assert complete_models(prefix="deferredmodels") == 1  # the other is left for first use
    assert Deferred.__pydantic_complete__
    assert Deferred(n=1).n == 1
    assert not Unresolvable.__pydantic_complete__


class _Pool:
    """A client for one pool with one queue and one deployment (of one flow) that records
    the reads ``RelatedObjects.prefill`` makes."""

    def __init__(self, fail: bool = False) -> None:
        self.reads: list[str] = []
        self.fail = fail
        self.queue = SimpleNamespace(id=uuid.uuid4(), name="default")
        self.flow = SimpleNamespace(id=uuid.uuid4(), name="export-vouchers")
        self.deployment = SimpleNamespace(id=uuid.uuid4(), flow_id=self.flow.id)

    def _read(self, what: str, answer: Any) -> Any:
        self.reads.append(what)
        if self.fail:
            raise RuntimeError("server said no")
        return answer

    async def read_work_pool(self, name: str) -> Any:
        return self._read("pool", SimpleNamespace(name=name))

    async def read_work_queues(self, work_pool_name: str) -> Any:
        return self._read("queues", [self.queue])

    async def read_deployments(self, work_pool_filter: Any) -> Any:
        return self._read("deployments", [self.deployment])

    async def read_flows(self, work_pool_filter: Any) -> Any:
        return self._read("flows", [self.flow])

    def run(self, **fields: Any) -> Any:
        """A flow run of the deployment as the worker's poll returns it (no pool name)."""
        base = dict(
            id=uuid.uuid4(),
            flow_id=self.flow.id,
            deployment_id=self.deployment.id,
            work_queue_id=self.queue.id,
            work_pool_name=None,
        )
        return SimpleNamespace(**{**base, **fields})


def test_the_worker_hands_runs_the_related_objects_it_read_while_fresh() -> None:
    import asyncio

    from deployments.worker import RelatedObjects

    related, client = RelatedObjects("exportflow"), _Pool()
    run = client.run()
    keys = {
        f"flow.{run.flow_id}",
        f"deployment.{run.deployment_id}",
        f"work-queue.{run.work_queue_id}",
        "work-pool.exportflow",
    }
    assert set(related.wanted(run)) == keys
    assert related.known(run) == {}  # nothing read yet: the run reads them itself
    assert asyncio.run(related.prefill(client)) == 1  # the pool's deployments
    assert len(client.reads) == 4
    known = related.known(run)
    assert set(known) == keys
    assert known["work-pool.exportflow"][0] == "work-pool"
    assert known[f"deployment.{run.deployment_id}"][1] is client.deployment

    sibling = client.run()  # a second run of the same deployment: the same read serves it
    assert set(related.known(sibling)) == keys
    assert len(client.reads) == 4

    related.fresh_s = 0.0  # stale: not handed on, read again
    assert related.known(run) == {}
    asyncio.run(related.prefill(client))
    assert len(client.reads) == 8


def test_a_related_object_the_worker_has_not_read_is_left_to_the_run() -> None:
    import asyncio

    import pytest

    from deployments.worker import RelatedObjects

    related, client = RelatedObjects("exportflow"), _Pool()
    asyncio.run(related.prefill(client))
    newer = client.run(deployment_id=uuid.uuid4(), flow_id=uuid.uuid4())  # made since
    assert set(related.known(newer)) == {
        f"work-queue.{newer.work_queue_id}",
        "work-pool.exportflow",
    }
    unread = RelatedObjects("exportflow")
    with pytest.raises(RuntimeError):  # keep_related_fresh logs it and tries again
        asyncio.run(unread.prefill(_Pool(fail=True)))
    assert unread.known(client.run()) == {}


def test_seeded_related_objects_are_what_prefects_cache_reads_back() -> None:
    """The keys and entries match Prefect's own: its lookup finds them without a read."""
    import asyncio

    from prefect.events.related import RESOURCE_CACHE, _get_and_cache_related_object

    from deployments.worker import seed_related_resources

    deployment_id = uuid.uuid4()
    deployment = SimpleNamespace(id=deployment_id, name="voucher-export")

    async def no_read(obj_id: Any) -> Any:
        raise AssertionError("read although seeded")

    try:
        seed_related_resources({f"deployment.{deployment_id}": ("deployment", deployment)})
        entry = asyncio.run(
            _get_and_cache_related_object(
                kind="deployment",
                role="deployment",
                client_method=no_read,
                obj_id=deployment_id,
                cache=RESOURCE_CACHE,
            )
        )
    finally:
        RESOURCE_CACHE.pop(f"deployment.{deployment_id}", None)
    assert entry == {"kind": "deployment", "object": deployment, "role": "deployment"}


def test_a_forked_run_reads_the_servers_default_result_storage_once(monkeypatch: Any) -> None:
    import asyncio

    import prefect.results

    from deployments.worker import read_server_result_storage_once

    block_id = uuid.uuid4()
    reads: list[str] = []

    def read() -> Any:
        reads.append("sync")
        return block_id

    async def aread() -> Any:
        reads.append("async")
        return block_id

    monkeypatch.setattr(prefect.results, "_read_server_default_result_storage_block_id", read)
    monkeypatch.setattr(prefect.results, "_aread_server_default_result_storage_block_id", aread)
    read_server_result_storage_once()
    answers = [prefect.results._read_server_default_result_storage_block_id() for _ in range(3)]
    answers.append(asyncio.run(prefect.results._aread_server_default_result_storage_block_id()))
    assert answers == [block_id] * 4
    assert reads == ["sync"]
