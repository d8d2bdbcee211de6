"""The API process: ``uvicorn --factory exportflow.web:main_app``.

Chooses how exports start (``EXPORTFLOW_LAUNCHER``): ``deployment`` runs them on the Prefect
server's workers (production); ``thread`` runs the flow inside the API process (development
without a Prefect server). Only the ``thread`` choice imports the flows.
"""

from __future__ import annotations

from fastapi import FastAPI

from api import create_app
from api.launcher import Launcher
from core.settings import get_settings


def main_app() -> FastAPI:
    launcher: Launcher | None = None
    if get_settings().launcher == "thread":
        from flows.launch import ThreadLauncher

        launcher = ThreadLauncher()
    return create_app(launcher=launcher)
