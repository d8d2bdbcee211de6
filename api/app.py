"""The FastAPI application: routers, error handlers, the engine and launcher it uses."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi import FastAPI

from api import docs, errors
from api.launcher import DeploymentLauncher, Launcher
from api.logs import redact_access_log
from api.routes import audit, download, erasure, exports, webhooks


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
