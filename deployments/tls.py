"""One verified TLS context per CA file for Prefect's API clients, in the warm worker's runs.

Prefect builds a new ``ssl.create_default_context(cafile=<certifi or PREFECT_API_SSL_CERT_FILE>)``
for every API client it opens (``PrefectClient``, ``SyncPrefectClient``, the server version
check), whether the API is ``https://`` or not: each loads ~150 CA certificates, 17-20 ms on an
idle core and 20-90 ms with a run's threads and PostgreSQL busy. A forked export run opened 12
of them, 0.64 s of its start (traced), most before it was Running.

``share_contexts`` gives those Prefect modules an ``ssl`` whose ``create_default_context``
returns one context per (purpose, CA file) when a CA file is given -- the verified context,
which Prefect never changes after making it -- and a new one otherwise (the insecure path
changes the context it gets). Everything else is the ``ssl`` module itself. The warm parent
calls it before forking, so the context is built once and every run shares it.
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
    """Give ``modules`` (those imported) one ``SharedContexts`` as their ``ssl``."""
    import sys

    shared = SharedContexts()
    for name in modules:
        module = sys.modules.get(name)
        if isinstance(module, ModuleType) and getattr(module, "ssl", None) is ssl:
            module.ssl = shared  # type: ignore[attr-defined]
    return shared
