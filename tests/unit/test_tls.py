"""``core.tls``: Prefect's API clients in a forked run share one verified TLS context."""

from __future__ import annotations

import importlib
import ssl
from collections.abc import Iterator

import certifi
import prefect.client.orchestration as orchestration
import pytest
from prefect.client.orchestration import PrefectClient, SyncPrefectClient
from prefect.settings import get_current_settings

from core import tls


@pytest.fixture
def made(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, object]]]:
    """Every TLS context ``ssl`` really builds while the test runs; Prefect's modules get
    their own ``ssl`` back afterwards."""
    calls: list[dict[str, object]] = []
    real = ssl.create_default_context

    def counted(*args: object, **kwargs: object) -> ssl.SSLContext:
        calls.append(kwargs)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ssl, "create_default_context", counted)
    for name in tls.PREFECT_MODULES:
        monkeypatch.setattr(importlib.import_module(name), "ssl", ssl)
    yield calls


def test_prefect_clients_share_one_verified_context(made: list[dict[str, object]]) -> None:
    api = "http://127.0.0.1:9/api"
    PrefectClient(api=api)
    assert len(made) == 1  # the control: without sharing, every client builds its own

    tls.share_contexts()
    assert orchestration.ssl is not ssl  # type: ignore[attr-defined]
    clients = [PrefectClient(api=api), SyncPrefectClient(api=api), PrefectClient(api=api)]

    assert len(made) == 2  # one more, for all three
    cafile = get_current_settings().api.ssl_cert_file or certifi.where()  # as Prefect picks it
    assert made[-1] == {"cafile": cafile}
    contexts = {id(c._client._transport._pool._ssl_context) for c in clients}  # type: ignore[attr-defined]
    assert len(contexts) == 1


def test_contexts_a_caller_changes_are_never_shared(made: list[dict[str, object]]) -> None:
    shared = tls.SharedContexts()
    insecure = shared.create_default_context()  # Prefect turns verification off on this one
    insecure.check_hostname = False
    insecure.verify_mode = ssl.CERT_NONE

    assert shared.create_default_context() is not insecure
    verified = shared.create_default_context(cafile=certifi.where())
    assert verified.verify_mode == ssl.CERT_REQUIRED and verified.check_hostname
    assert shared.create_default_context(cafile=certifi.where()) is verified
    assert shared.CERT_NONE is ssl.CERT_NONE  # the rest is the ssl module itself


def test_a_process_shares_prefects_contexts_built_before_its_first_client(
    made: list[dict[str, object]],
) -> None:
    """What the API and the warm worker's parent call at start: the context is built then,
    and the clients opened later (a launch, a run) build none."""
    tls.share_prefects()
    cafile = get_current_settings().api.ssl_cert_file or certifi.where()
    assert made == [{"cafile": cafile}]

    api = "http://127.0.0.1:9/api"
    SyncPrefectClient(api=api)
    PrefectClient(api=api)
    assert len(made) == 1


def test_sharing_again_keeps_the_contexts_already_made(made: list[dict[str, object]]) -> None:
    """``flows.launch.run_here`` shares before every in-process run: once made, never again."""
    first = tls.share_prefects()
    assert tls.share_prefects() is first
    SyncPrefectClient(api="http://127.0.0.1:9/api")
    assert len(made) == 1
