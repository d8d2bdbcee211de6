"""Work done at a process's start instead of on its first request (``core.warmup``)."""

from __future__ import annotations

import pytest


def test_every_endpoints_source_location_is_read_at_start_mounted_and_included_too() -> None:
    """``endpoint_contexts`` reads what FastAPI would read on each route's first request, for
    routes of mounted apps and included routers as well."""
    import fastapi.routing
    from fastapi import APIRouter, FastAPI

    from core.warmup import endpoint_contexts

    def direct() -> None: ...

    def included() -> None: ...

    def mounted() -> None: ...

    router = APIRouter()
    router.add_api_route("/included", included)
    inner = FastAPI()
    inner.add_api_route("/mounted", mounted)
    app = FastAPI()
    app.add_api_route("/direct", direct)
    app.include_router(router, prefix="/r")
    app.mount("/api", inner)

    assert endpoint_contexts(app) >= 3
    cache = fastapi.routing._endpoint_context_cache  # type: ignore[attr-defined]
    for endpoint in (direct, included, mounted):
        assert cache[id(endpoint)]["function"] == endpoint.__name__


def test_without_fastapis_step_nothing_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    import fastapi.routing
    from fastapi import FastAPI

    from core.warmup import endpoint_contexts

    monkeypatch.delattr(fastapi.routing, "_extract_endpoint_context")
    app = FastAPI()
    app.add_api_route("/x", lambda: None)
    assert endpoint_contexts(app) == 0
