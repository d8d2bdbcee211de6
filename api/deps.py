"""FastAPI dependencies as ``Annotated`` aliases: engine, settings, launcher, the caller."""

from __future__ import annotations

from typing import Annotated

import sqlalchemy as sa
from fastapi import Depends, Header, Request

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


def optional_caller(
    engine: EngineDep,
    x_app_id: Annotated[str | None, Header(description="API key id.")] = None,
    x_app_token: Annotated[str | None, Header(description="API key secret.")] = None,
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
