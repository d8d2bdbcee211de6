"""The FastAPI application: routers, error handlers, the engine and launcher it uses."""

from __future__ import annotations

import threading

import sqlalchemy as sa
from fastapi import FastAPI

from api import docs, errors
from api.launcher import DeploymentLauncher, Launcher
from api.logs import redact_access_log
from api.routes import audit, download, erasure, exports, webhooks
from core.warmup import endpoint_contexts


def create_app(engine: sa.Engine | None = None, launcher: Launcher | None = None) -> FastAPI:
    """Build the app; defaults: the configured database, exports launched as deployment runs."""
    if engine is None:
        from db.engine import get_engine
        from db.migrate import upgrade

        engine = get_engine()
        upgrade(engine)
    app = FastAPI(
        title="exportflow exports API",
        version="1.0.0",
        description="Asynchronous bulk exports, compatible with the Voucherify Exports API. "
        "Authenticate with `X-App-Id` and `X-App-Token`; errors are "
        "`{code, key, message, details}`.",
        docs_url=None,  # served offline by api.docs
        redoc_url=None,
    )
    app.state.engine = engine
    app.state.launcher = launcher or DeploymentLauncher()
    errors.install(app)
    docs.install(app)
    redact_access_log()
    app.include_router(download.router)
    app.include_router(exports.router)
    app.include_router(webhooks.router)
    app.include_router(erasure.router)
    app.include_router(audit.router)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def warm_up(app: FastAPI) -> threading.Thread | None:
    """What the first requests after a start would otherwise do, done at start (the API
    process, ``exportflow.web``; tests build apps without it).

    - The OpenAPI document: building it builds every route's request and response handling,
      which FastAPI otherwise does on the first request that reaches a router (~45 ms of the
      first POST after a start, ~0.25 s once here).
    - Each endpoint's source location, which FastAPI reads for its errors on the route's
      first request (``core.warmup.endpoint_contexts``: ~10 ms of the first POST).
    - The deployments' ids (``DeploymentLauncher.read_ids``), in a thread that does not hold
      up the start; returned, so that a caller can wait for it.
    """
    app.openapi()
    endpoint_contexts(app)
    launcher = app.state.launcher
    if not isinstance(launcher, DeploymentLauncher):
        return None
    from entities import ENTITIES

    reader = threading.Thread(
        target=launcher.read_ids,
        args=(list(ENTITIES.values()),),
        name="read-deployment-ids",
        daemon=True,
    )
    reader.start()
    return reader
