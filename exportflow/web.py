"""The API process: ``uvicorn --factory exportflow.web:main_app``.

Chooses how exports start (``EXPORTFLOW_LAUNCHER``): ``deployment`` runs them on the Prefect
server's workers (production); ``thread`` runs the flow inside the API process (development
without a Prefect server). Only the ``thread`` choice imports the flows.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI

from api import create_app
from api.app import warm_up
from api.launcher import Launcher
from core.settings import get_settings

_UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


def _keep_uvicorn_logging() -> None:
    """Let Prefect configure logging now, then give uvicorn its loggers back.

    Prefect applies its logging config the first time it is imported (here: the first
    download or launch), and ``dictConfig`` resets the children of the ``uvicorn`` logger it
    configures: the access log would go silent mid-run. Importing it up front and restoring
    uvicorn's own handlers keeps one access log, with its redaction filter (``api.logs``).
    """
    saved = {
        name: (lg.level, list(lg.handlers), lg.propagate, list(lg.filters))
        for name in _UVICORN_LOGGERS
        for lg in [logging.getLogger(name)]
    }
    import prefect.main  # noqa: F401  (runs Prefect's setup_logging once)

    for name, (level, handlers, propagate, filters) in saved.items():
        logger = logging.getLogger(name)
        logger.setLevel(level)
        logger.handlers[:] = handlers
        logger.propagate = propagate
        for log_filter in filters:
            if log_filter not in logger.filters:
                logger.addFilter(log_filter)


def main_app() -> FastAPI:
    _keep_uvicorn_logging()
    launcher: Launcher | None = None
    if get_settings().launcher == "thread":
        from flows.launch import ThreadLauncher

        launcher = ThreadLauncher()
    app = create_app(launcher=launcher)
    warm_up(app)
    return app
