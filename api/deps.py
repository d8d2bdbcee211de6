"""FastAPI dependencies as ``Annotated`` aliases: engine, settings, launcher, the caller."""

from __future__ import annotations

from typing import Annotated

import sqlalchemy as sa
from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader

from api.auth import ApiKey, authenticate
from api.errors import ApiError
from api.launcher import Launcher
from core.settings import Settings, get_settings


def get_db(request: Request) -> sa.Engine:
    engine: sa.Engine = request.app.state.engine
    return engine


def get_launcher(request: Request) -> Launcher:
    launcher: Launcher = request.app.state.launcher
    return launcher


EngineDep = Annotated[sa.Engine, Depends(get_db)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
LauncherDep = Annotated[Launcher, Depends(get_launcher)]


# Security schemes (not plain headers): OpenAPI lists them under securitySchemes, so /docs
# has an Authorize button that fills in both headers.
APP_ID = APIKeyHeader(
    name="X-App-Id",
    scheme_name="AppId",
    description="API key id (`exportflow keys create` prints it).",
    auto_error=False,
)
APP_TOKEN = APIKeyHeader(
    name="X-App-Token",
    scheme_name="AppToken",
    description="API key secret, shown once when the key is created.",
    auto_error=False,
)


def optional_caller(
    engine: EngineDep,
    x_app_id: Annotated[str | None, Security(APP_ID)] = None,
    x_app_token: Annotated[str | None, Security(APP_TOKEN)] = None,
) -> ApiKey | None:
    """The authenticated key, None without credentials; 401 for wrong ones."""
    if not x_app_id and not x_app_token:
        return None
    if not x_app_id or not x_app_token:
        raise ApiError(401, "unauthorized", "send both X-App-Id and X-App-Token")
    key = authenticate(engine, x_app_id, x_app_token)
    if key is None:
        raise ApiError(401, "unauthorized", "invalid X-App-Id / X-App-Token")
    return key


OptionalCallerDep = Annotated[ApiKey | None, Depends(optional_caller)]


def caller(key: OptionalCallerDep) -> ApiKey:
    if key is None:
        raise ApiError(401, "unauthorized", "missing X-App-Id / X-App-Token headers")
    return key


def require(scope: str) -> object:
    """A dependency that demands ``scope`` of the caller's key (403 otherwise)."""

    def check(key: Annotated[ApiKey, Depends(caller)]) -> ApiKey:
        if scope not in key.scopes:
            raise ApiError(403, "forbidden", f"this API key lacks the {scope!r} scope")
        return key

    return Depends(check)


ReaderDep = Annotated[ApiKey, require("exports:read")]
WriterDep = Annotated[ApiKey, require("exports:write")]
