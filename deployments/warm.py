"""The warm parent of flow runs: importing this module *is* the warm-up.

Only the fork server of ``deployments.worker`` imports it (``set_forkserver_preload``): it loads
what every export run needs -- Prefect's engine, the flows and everything behind them, and Great
Expectations with its context built (~3-5 s and most of a run's memory) -- once, so each flow
run forked from that parent starts with them in place; what a run imports on first use beyond
those (``RUN_IMPORTS``); the validators of Prefect's pydantic models, which Prefect builds on
first use (``core.warmup.complete_models``); and the TLS context Prefect's API
clients verify with (``core.tls``), which a run would otherwise build a dozen times.
``gc.freeze()`` moves the imported objects out of the collector's reach, so a child's
collections do not touch (and copy) the parent's pages.

Nothing here starts a thread, opens a connection or talks to the Prefect API: a fork keeps
only the forking thread, and a child must not share a socket with its siblings.
"""

from __future__ import annotations

import gc
import importlib
import time
import warnings

from core import tls
from core.memory import tune_allocators
from core.warmup import complete_models

RUN_IMPORTS = (
    "anyio._backends._asyncio",  # anyio loads its backend at a run's first event loop
    "prefect.task_engine",
    "prefect.utilities.visualization",  # every task call looks for a visualization context
    "prefect.concurrency.sync",  # the export slots (tasks.limits)
    "prefect.artifacts",  # the run's page (tasks.report)
    "prefect.filesystems",
    "storage.local",
)
"""Modules every export run imports on first use that the flows' own imports do not load:
~110 ms of each forked run's CPU on two cores (py-spy over a burst of twenty 10-row exports;
graphviz, behind Prefect's visualization, the largest)."""

S3_IMPORTS = ("prefect_aws", "storage.s3")
"""Preloaded only when the settings store exports through a block or S3 (boto3 is ~50 MB that
every run's RSS would count)."""


def _stores_elsewhere() -> bool:
    """The settings name a storage block or an S3 bucket (read afresh: the cached settings
    must not be the parent's, a run's environment may differ)."""
    from core.settings import Settings

    try:
        settings = Settings()
    except Exception:  # reported where it matters (serve, the CLI); a run imports on demand
        return False
    return bool(settings.storage_block or settings.s3_bucket)


# multiprocessing prepares every forked child by running the worker's main module again as
# ``__mp_main__`` (the worker runs as ``python -m deployments.worker``); that module is already
# imported here, so runpy warned "'deployments.worker' found in sys.modules ..." once per flow
# run in the worker's log. The module only defines things; running it again is harmless.
warnings.filterwarnings(
    "ignore", message="'deployments.worker' found in sys.modules", category=RuntimeWarning
)

_started = time.perf_counter()
tune_allocators()  # before anything imports pyarrow: the runs forked from here inherit it

import prefect.engine  # noqa: E402  (the flow-run entry point a child runs)
import prefect.flow_engine  # noqa: E402, F401

import flows.exports  # noqa: E402, F401  (the flows, the pipeline, writers, storage)
from deployments import worker  # noqa: E402
from tasks import validate  # noqa: E402

for _module in RUN_IMPORTS + (S3_IMPORTS if _stores_elsewhere() else ()):
    importlib.import_module(_module)
validate.warm_up()
_shared_tls = tls.share_prefects()  # Prefect's API clients: one TLS context, built here
MODELS_BUILT = complete_models()  # after every import
worker.settings_view()  # computes what a run's environment is compared with, once, here
gc.collect()
gc.freeze()

WARM_UP_S = time.perf_counter() - _started
"""Seconds the imports and the Great Expectations context took in the parent."""
