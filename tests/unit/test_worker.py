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
    _prefect_settings,
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
