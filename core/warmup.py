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


def endpoint_contexts(app: object) -> int:
    """Read now the source location FastAPI gives each endpoint's errors, for every route of
    ``app`` (mounted apps and included routers too); returns how many endpoints it read.

    FastAPI finds an endpoint's file and first line (``inspect.getsourcelines``, which
    tokenizes the function's source) on the first request its route serves, and keeps it. On
    two cores that was ~7-13 ms of the first POST of an export after the API started, and
    the same in the Prefect server for each route an export reaches first (taking a slot,
    artifacts, labels). All of the Prefect server's 193 endpoints take ~0.14 s at its start.
    Where FastAPI has no such step (an older or newer FastAPI), nothing is done."""
    import fastapi.routing as routing

    extract = getattr(routing, "_extract_endpoint_context", None)
    included = getattr(routing, "_IncludedRouter", None)
    if extract is None:
        return 0
    seen: set[int] = set()
    read = 0

    def walk(node: object) -> None:
        nonlocal read
        if id(node) in seen:
            return
        seen.add(id(node))
        for route in getattr(node, "routes", None) or []:
            if isinstance(route, (routing.APIRoute, routing.APIWebSocketRoute)):
                if route.dependant.call is not None:
                    extract(route.dependant.call)
                    read += 1
            elif included is not None and isinstance(route, included):
                walk(route.original_router)
            elif getattr(route, "app", None) is not None:
                walk(route.app)

    walk(app)
    return read
