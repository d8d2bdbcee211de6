"""The warm parent of flow runs: importing this module *is* the warm-up.

Only the fork server of ``deployments.worker`` imports it (``set_forkserver_preload``): it loads
what every export run needs -- Prefect's engine, the flows and everything behind them, and Great
Expectations with its context built (~3-5 s and most of a run's memory) -- once, so each flow
run forked from that parent starts with them in place; and the TLS context Prefect's API
clients verify with (``core.tls``), which a run would otherwise build a dozen times.
``gc.freeze()`` moves the imported objects out of the collector's reach, so a child's
collections do not touch (and copy) the parent's pages.

Nothing here starts a thread, opens a connection or talks to the Prefect API: a fork keeps
only the forking thread, and a child must not share a socket with its siblings.
"""

from __future__ import annotations

import gc
import time

from core import tls
from core.memory import tune_allocators

_started = time.perf_counter()
tune_allocators()  # before anything imports pyarrow: the runs forked from here inherit it

import prefect.engine  # noqa: E402  (the flow-run entry point a child runs)
import prefect.flow_engine  # noqa: E402, F401

import flows.exports  # noqa: E402, F401  (the flows, the pipeline, writers, storage)
from tasks import validate  # noqa: E402

validate.warm_up()
_shared_tls = tls.share_prefects()  # Prefect's API clients: one TLS context, built here
gc.collect()
gc.freeze()

WARM_UP_S = time.perf_counter() - _started
"""Seconds the imports and the Great Expectations context took in the parent."""
