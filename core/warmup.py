"""Work a process would otherwise do on its first request, done at its start instead."""

from __future__ import annotations

import sys


def complete_models(prefix: str = "prefect") -> int:
    """Build now the validators of the pydantic models of the loaded ``prefix`` modules whose
    build was deferred; returns how many were built. Prefect defers them (``defer_build``), so
    every process built the ones it used on first use: each forked run (``FlowRun``,
    ``State[...]``, the artifact and update actions, ...: ~70 ms of its CPU), and the Prefect
    server, the worker and the API on the first export after a start. All of Prefect's take
    ~0.13 s. A model that cannot be built yet is left to be built on first use, as before."""
    from pydantic import BaseModel

    built = 0
    for name, module in list(sys.modules.items()):
        if module is None or not (name == prefix or name.startswith(f"{prefix}.")):
            continue
        for value in list(vars(module).values()):
            if (
                isinstance(value, type)
                and issubclass(value, BaseModel)
                and value.__module__ == name
                and not value.__pydantic_complete__
            ):
                try:
                    value.model_rebuild()
                except Exception:  # unresolvable yet: built on first use
                    continue
                built += value.__pydantic_complete__
    return built
