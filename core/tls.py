"""One verified TLS context per CA file for Prefect's API clients in a long-lived process.

Prefect builds a new ``ssl.create_default_context(cafile=<certifi or PREFECT_API_SSL_CERT_FILE>)``
for every API client it opens (``PrefectClient``, ``SyncPrefectClient``, the server version
check), whether the API is ``https://`` or not: each loads ~150 CA certificates, 17-20 ms on an
idle core and 20-90 ms with a run's threads and PostgreSQL busy. A forked export run opened 12
of them, 0.64 s of its start (traced); the API opened one per export it launched, and
``prefect deploy --all`` 50 (1.6 s of its 9.5 s on two cores).

``share_contexts`` gives those Prefect modules an ``ssl`` whose ``create_default_context``
returns one context per (purpose, CA file) when a CA file is given -- the verified context,
which Prefect never changes after making it -- and a new one otherwise (the insecure path
changes the context it gets). Everything else is the ``ssl`` module itself. ``share_prefects``
does that and builds the context Prefect's settings ask for, up front: the warm worker's parent
before it forks (every run shares it), the API at start, serve's Prefect CLI steps.
"""

from __future__ import annotations

import os
import ssl
import threading
from types import ModuleType
from typing import Any

PREFECT_MODULES = (
    "prefect.client.orchestration",
    "prefect._internal.version_checking",
    "prefect._internal.websockets",
)
"""The Prefect modules that build the API clients' TLS contexts with ``ssl``."""


class SharedContexts:
    """Stands in for ``ssl`` in a module: verified contexts made once per CA file."""

    def __init__(self) -> None:
        self._made: dict[tuple[Any, str, int], ssl.SSLContext] = {}
        self._lock = threading.Lock()

    def create_default_context(
        self,
        purpose: ssl.Purpose = ssl.Purpose.SERVER_AUTH,
        *,
        cafile: str | None = None,
        capath: str | None = None,
        cadata: str | bytes | None = None,
    ) -> ssl.SSLContext:
        if cafile is None or capath is not None or cadata is not None:
            return ssl.create_default_context(purpose, cafile=cafile, capath=capath, cadata=cadata)
        key = (purpose, os.path.realpath(cafile), os.stat(cafile).st_mtime_ns)
        with self._lock:
            made = self._made.get(key)
            if made is None:
                made = self._made[key] = ssl.create_default_context(purpose, cafile=cafile)
            return made

    def __getattr__(self, name: str) -> Any:
        return getattr(ssl, name)


def share_contexts(modules: tuple[str, ...] = PREFECT_MODULES) -> SharedContexts:
    """Give ``modules`` (those imported) one ``SharedContexts`` as their ``ssl``: the one some
    of them already have, if any (calling this again shares the contexts already made)."""
    import sys

    given = (getattr(sys.modules.get(name), "ssl", None) for name in modules)
    shared = next((g for g in given if isinstance(g, SharedContexts)), None) or SharedContexts()
    for name in modules:
        module = sys.modules.get(name)
        if isinstance(module, ModuleType) and getattr(module, "ssl", None) is ssl:
            module.ssl = shared  # type: ignore[attr-defined]
    return shared


def share_prefects() -> SharedContexts:
    """Share the TLS contexts of Prefect's API clients in this process (importing the modules
    that make them) and build the one its settings verify with now, not in the first request."""
    import certifi

    # the modules whose ssl is shared (share_contexts changes only those imported)
    import prefect._internal.version_checking
    import prefect._internal.websockets
    import prefect.client.orchestration  # noqa: F401
    from prefect.settings import get_current_settings

    shared = share_contexts()
    shared.create_default_context(
        cafile=get_current_settings().api.ssl_cert_file or certifi.where()
    )
    return shared
