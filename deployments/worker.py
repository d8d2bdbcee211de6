"""A process worker whose flow runs fork from a warm parent instead of starting a new Python.

``python -m deployments.worker --pool exportflow`` polls the same ``process`` work pool with the
same job template as ``prefect worker start --type process``, and each flow run is still its
own process, started, watched, cancelled and reported by Prefect's own run executor (states,
logs and the run page in the UI are the same). The only difference is how that process
begins: Prefect 3.8's process worker execs a supervisor interpreter that execs
``python -m prefect.engine`` (two interpreter starts and every import, ~5-10 s on two busy
cores); this worker asks a ``multiprocessing`` fork server -- started once, with
``deployments.warm`` (Prefect, the flows, Great Expectations) preloaded -- to fork a child,
which sets the run's environment and working directory and runs ``prefect.engine`` as
``__main__`` exactly as the exec'd one would.

Isolation is the process worker's: one process per run, its own memory (copy-on-write from
the parent, which never runs a flow itself), its own exit code; a crash or ``kill -9`` of a
run leaves the parent and the other runs alone. A work pool whose job template sets an
explicit ``command`` keeps Prefect's own path.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import logging
import multiprocessing
import multiprocessing.context
import os
import runpy
import sys
import tempfile
import time
import warnings
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

import anyio
import anyio.abc
import anyio.to_thread
from prefect.flows import load_flow_from_flow_run
from prefect.runner._flow_run_executor import FlowRunExecutorContext
from prefect.runner._process_manager import ProcessHandle
from prefect.settings import get_current_settings
from prefect.utilities.processutils import sanitize_subprocess_env
from prefect.workers.process import ProcessJobConfiguration, ProcessWorker, ProcessWorkerResult

from core import nudge, tls
from core.warmup import complete_models

if TYPE_CHECKING:
    from prefect.client.schemas.objects import FlowRun
    from prefect.runner._control_channel import ControlChannel

PRELOAD = ["deployments.warm", "deployments.worker"]
"""What the fork server imports before it forks anything (see ``deployments.warm``)."""

_log = logging.getLogger("exportflow.worker")


def run_engine(
    env: dict[str, str],
    cwd: str | None,
    tags: list[str] | None = None,
    scheduled: datetime | None = None,
    related: dict[str, tuple[str, Any]] | None = None,
) -> None:
    """In the forked child: become the flow run's process, then run ``prefect.engine``.

    The environment is replaced by the run's (as an exec'd engine would see it) and Prefect's
    settings are read again from it; exit handlers registered by the parent's imports are
    dropped, and the child's own run when the engine is done (``multiprocessing`` ends a child
    with ``os._exit``, which would skip them: Prefect flushes logs and events there).

    The run sends no Prefect flow-run heartbeats (``flows.launch.without_heartbeats``: their
    thread kept every run's process ~0.5 s past its final state, holding a worker slot).

    Before the engine starts, a run launched for a job (``tags``; ``scheduled``, its expected
    start, anchors relative dates) gets its head start (``tasks.headstart``): its query starts
    on a thread while Prefect starts the run.
    """
    settings_before = settings_view()
    os.environ.clear()
    os.environ.update(env)
    if cwd:
        os.chdir(cwd)
    if _prefect_settings(env) != settings_before:  # the job's env changes Prefect's settings
        import prefect.context

        prefect.context.refresh_global_settings_context()
    atexit._clear()
    atexit.register(logging.shutdown)
    sys.argv = [sys.argv[0] if sys.argv else "prefect.engine"]
    from flows.launch import without_heartbeats
    from tasks import headstart

    try:
        seed_related_resources(related or {})
        read_server_result_storage_once()
        headstart.begin(tags or [], scheduled)
        with (
            warnings.catch_warnings(),  # the parent imported it; __main__ runs it afresh
            without_heartbeats(),
        ):
            warnings.filterwarnings("ignore", "'prefect.engine' found in sys.modules")
            runpy.run_module("prefect.engine", run_name="__main__", alter_sys=True)
    finally:
        headstart.discard()
        atexit._run_exitfuncs()


def settings_view() -> dict[str, str]:
    """The ``PREFECT_`` variables this process's Prefect settings come from: its environment's
    and every setting it has set, as a run's environment carries them
    (``ForkStarter.environment``). A forked run whose environment holds exactly these keeps
    the settings it inherited instead of building them again (~45 ms of its CPU); the
    settings' part costs ~30 ms to compute, once per settings object
    (``settings_environment``), which the warm parent does before it forks
    (``deployments.warm``)."""
    return _prefect_settings({**os.environ, **settings_environment()})


_ENVIRONMENT_OF: tuple[object, dict[str, str]] | None = None


def settings_environment() -> dict[str, str]:
    """``get_current_settings().to_environment_variables(exclude_unset=True)``, computed once
    per settings object (a new dict each call).

    The worker puts it in every run's environment twice (Prefect's job configuration, then
    the starter, as Prefect's own starter does): each call dumps the nested settings models at
    every level, 60-90 ms of the worker's CPU on two busy cores, 3.3 s of a burst of twenty
    (py-spy). Prefect never changes a settings object it made (``temporary_settings`` makes a
    new one), so the answer for the same object is the same; a new object is computed anew.
    """
    global _ENVIRONMENT_OF
    settings = get_current_settings()
    known = _ENVIRONMENT_OF
    if known is None or known[0] is not settings:
        known = _ENVIRONMENT_OF = (settings, settings.to_environment_variables(exclude_unset=True))
    return dict(known[1])


class WarmJobConfiguration(ProcessJobConfiguration):
    """The process worker's job configuration, with the settings' environment computed once
    per settings object (``settings_environment``) rather than for every run."""

    @classmethod
    def _base_environment(cls) -> dict[str, str]:
        return settings_environment()


def _prefect_settings(env: Mapping[str, str]) -> dict[str, str]:
    """The variables Prefect reads its settings from (``PREFECT__*`` are per-run, not settings)."""
    return {
        k: v for k, v in env.items() if k.startswith("PREFECT_") and not k.startswith("PREFECT__")
    }


RELATED_FRESH_S = 60.0
"""How long the worker hands its runs the flow, deployment, work queue and work pool it read,
before reading them again (``RelatedObjects``)."""


class RelatedObjects:
    """The objects a run's events name as related resources (its flow, deployment, work queue
    and work pool), read by the worker and handed to the runs it forks.

    Prefect labels every event of a run with them, reading each once per process into its
    related-resource cache (``prefect.events.related``), so each forked run made four reads of
    objects that are the same for every run of an entity: 4 of the ~38 requests a 10-row
    export makes to the Prefect server, whose CPU bounds a burst. The worker reads all of its
    pool's (``prefill``) from its start and every half ``fresh_s`` (``keep_related_fresh``). A
    run gets what the worker read less than ``fresh_s`` ago; what is missing (a deployment made
    since the last read) or older it reads itself, as before. A renamed or retagged deployment
    is named the old way in events for at most ``fresh_s`` (Prefect's own cache, in a worker or
    a runner, keeps an object for the life of the process).
    """

    def __init__(self, pool: str, fresh_s: float = RELATED_FRESH_S) -> None:
        self.pool = pool
        self.fresh_s = fresh_s
        self._known: dict[str, tuple[str, Any, float]] = {}

    def wanted(self, flow_run: FlowRun) -> list[str]:
        """The cache keys (as Prefect's) of the run's objects (a run the worker polled does
        not carry its pool's name: it is the worker's)."""
        wanted = [f"flow.{flow_run.flow_id}"]
        if flow_run.deployment_id:
            wanted.append(f"deployment.{flow_run.deployment_id}")
        if flow_run.work_queue_id:
            wanted.append(f"work-queue.{flow_run.work_queue_id}")
        wanted.append(f"work-pool.{flow_run.work_pool_name or self.pool}")
        return wanted

    def known(self, flow_run: FlowRun) -> dict[str, tuple[str, Any]]:
        """Cache key -> (kind, object) for the run's objects read less than ``fresh_s`` ago."""
        now = time.monotonic()
        known = {}
        for key in self.wanted(flow_run):
            entry = self._known.get(key)
            if entry is not None and now - entry[2] < self.fresh_s:
                known[key] = entry[:2]
        return known

    async def prefill(self, client: Any) -> int:
        """Read the pool, its queues, and its deployments and their flows (four requests), so
        that runs of any of them get them without a run having read them first; return how
        many deployments the pool has."""
        from prefect.client.schemas.filters import WorkPoolFilter, WorkPoolFilterName

        in_pool = WorkPoolFilter(name=WorkPoolFilterName(any_=[self.pool]))
        pool = await client.read_work_pool(self.pool)
        queues = await client.read_work_queues(work_pool_name=self.pool)
        deployments = await client.read_deployments(work_pool_filter=in_pool)
        flows = await client.read_flows(work_pool_filter=in_pool)
        now = time.monotonic()
        self._known[f"work-pool.{self.pool}"] = ("work-pool", pool, now)
        for kind, objects in (("work-queue", queues), ("deployment", deployments), ("flow", flows)):
            for obj in objects:
                self._known[f"{kind}.{obj.id}"] = (kind, obj, now)
        return len(deployments)


def seed_related_resources(related: Mapping[str, tuple[str, Any]]) -> None:
    """Put ``related`` (``RelatedObjects.known``) in Prefect's related-resource cache, as
    Prefect's ``_get_and_cache_related_object`` stores what it reads."""
    import prefect.types._datetime
    from prefect.events.related import RESOURCE_CACHE

    now: Any = prefect.types._datetime.now("UTC")  # what Prefect stores (typed DateTime there)
    for key, (kind, obj) in related.items():
        RESOURCE_CACHE[key] = ({"kind": kind, "object": obj}, now)


def read_server_result_storage_once() -> None:
    """In a forked run's process: read the Prefect server's default result storage once.

    Prefect reads it (``GET /admin/storage``) each time it resolves a result store or the
    default persistence, and does not remember the answer when it is "none": three times per
    run before the flow starts, 3 of the ~38 requests a 10-row export makes to the Prefect
    server, whose CPU bounds a burst. The run's process lives for this one run, which now sees
    the answer of its first read throughout (as it already did for the store it resolved)."""
    import prefect.results

    answers: list[Any] = []

    def once(read: Any) -> Any:
        def read_once() -> Any:
            if not answers:
                answers.append(read())
            return answers[0]

        return read_once

    def once_async(read: Any) -> Any:
        async def read_once() -> Any:
            if not answers:
                answers.append(await read())
            return answers[0]

        return read_once

    prefect.results._read_server_default_result_storage_block_id = once(
        prefect.results._read_server_default_result_storage_block_id
    )
    prefect.results._aread_server_default_result_storage_block_id = once_async(
        prefect.results._aread_server_default_result_storage_block_id
    )


def _ready() -> None:
    """A no-op child: forking it proves the fork server is up and warm."""


class ForkStarter:
    """Starts one flow run as a child of the warm fork server (a Prefect ``ProcessStarter``).

    The environment is built as ``prefect.runner``'s ``EngineCommandStarter`` builds it for an
    exec'd engine: the worker's environment, the job's ``env``, Prefect's current settings and
    the run's own variables (flow run id, control channel port and token).
    """

    def __init__(
        self,
        forkserver: multiprocessing.context.ForkServerContext,
        *,
        env: dict[str, str | None],
        cwd: Path | None,
        control_channel: ControlChannel | None,
        related: dict[str, tuple[str, Any]] | None = None,
    ) -> None:
        self._forkserver = forkserver
        self._env = env
        self._cwd = cwd
        self._control_channel = control_channel
        self._related = related or {}

    def environment(self, flow_run: FlowRun) -> tuple[dict[str, str], bool]:
        """The run's environment, and whether it was registered with the control channel."""
        control: dict[str, str] = {}
        registered = False
        if self._control_channel is not None:
            with contextlib.suppress(RuntimeError):  # channel disabled: kill-only cancellation
                port, token = self._control_channel.register(flow_run.id)
                control = {"PREFECT__CONTROL_PORT": str(port), "PREFECT__CONTROL_TOKEN": token}
                registered = True
        env: dict[str, str | None] = {**os.environ}
        env.update(settings_environment())
        env.update(self._env)
        env.update(
            {
                "PREFECT__FLOW_RUN_ID": str(flow_run.id),
                "PREFECT__ENABLE_CANCELLATION_AND_CRASHED_HOOKS": "false",
                "PREFECT__DEPLOYMENT_NAME": self._env.get("PREFECT__DEPLOYMENT_NAME"),
                **control,
            }
        )
        return sanitize_subprocess_env(env), registered

    async def start(
        self,
        flow_run: FlowRun,
        task_status: anyio.abc.TaskStatus[ProcessHandle] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        env, registered = self.environment(flow_run)
        process = self._forkserver.Process(
            target=run_engine,
            args=(
                env,
                str(self._cwd) if self._cwd else None,
                list(flow_run.tags or []),
                flow_run.expected_start_time,
                self._related,
            ),
            name=f"flow-run-{flow_run.id}",
        )
        try:
            await anyio.to_thread.run_sync(process.start)
        except BaseException:
            if registered and self._control_channel is not None:
                self._control_channel.unregister(flow_run.id)
            raise
        task_status.started(ProcessHandle(process))  # type: ignore[arg-type]
        await anyio.to_thread.run_sync(process.join, abandon_on_cancel=True)


# Same type key as Prefect's process worker (same pool type and job template): Prefect's type
# registry warns that this subclass takes the key over, in this process only.
warnings.filterwarnings("ignore", message="Type 'WarmProcessWorker'", category=UserWarning)


class WarmProcessWorker(ProcessWorker):
    """Prefect's process worker, with flow runs forked from a warm parent (module docstring)."""

    type = "process"
    job_configuration = WarmJobConfiguration

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # One TLS context for this process's Prefect clients: two per run otherwise (the run's
        # executor and its cancellation observer), each loading ~150 CA certificates, 20-90 ms
        # of the worker's CPU on two busy cores (3.1 s of a burst of twenty, py-spy). The runs
        # share the one their warm parent made (``deployments.warm``).
        tls.share_prefects()
        self._forkserver = multiprocessing.get_context("forkserver")
        self._forkserver.set_forkserver_preload(PRELOAD)
        self.slot_freed = Wakeup()
        """Set whenever a run gives its slot back (``poll_when_a_slot_frees`` waits on it)."""
        self.related = RelatedObjects(self._work_pool_name)
        """What the runs' events name, read once for many runs (``RelatedObjects``)."""

    def _release_limit_slot(self, flow_run_id: UUID) -> None:
        super()._release_limit_slot(flow_run_id)
        self.slot_freed.set()

    def warm_up(self) -> float:
        """Start the fork server and wait until its preload is done; return the seconds taken."""
        started = time.perf_counter()
        probe = self._forkserver.Process(target=_ready, name="warm-up")
        probe.start()
        probe.join()
        return time.perf_counter() - started

    async def run(
        self,
        flow_run: FlowRun,
        configuration: ProcessJobConfiguration,
        task_status: anyio.abc.TaskStatus[int] | None = None,
    ) -> ProcessWorkerResult:
        if configuration._command_configured:  # an explicit command: Prefect's own way
            return await super().run(flow_run, configuration, task_status)
        if task_status is None:
            task_status = anyio.TASK_STATUS_IGNORED
        working_dir = (
            contextlib.nullcontext(configuration.working_dir)
            if configuration.working_dir
            else tempfile.TemporaryDirectory(suffix="prefect")
        )
        with working_dir as cwd, warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            async with FlowRunExecutorContext() as ctx:
                starter = ForkStarter(
                    self._forkserver,
                    env=configuration.env,
                    cwd=Path(cwd).resolve(),
                    control_channel=ctx.control_channel,
                    related=self.related.known(flow_run),
                )
                executor = ctx.create_executor(
                    flow_run,
                    starter,
                    resolve_flow=load_flow_from_flow_run,
                    propose_submitting=False,
                )
                outcome: list[Any] = []

                async def execute(
                    *, task_status: anyio.abc.TaskStatus[ProcessHandle] = anyio.TASK_STATUS_IGNORED
                ) -> None:
                    outcome.append(await executor.submit(task_status=task_status))

                async with anyio.create_task_group() as group:
                    handle = await group.start(execute)
                    if handle.pid is None:
                        raise RuntimeError("Flow run process has no PID")
                    task_status.started(handle.pid)

        execution = outcome[0] if outcome else None
        if execution is None or execution.status_code is None:
            raise RuntimeError("Failed to start flow run process.")
        return ProcessWorkerResult(
            status_code=execution.status_code, identifier=str(execution.handle.pid)
        )


async def _serve(
    pool: str, name: str | None, limit: int | None, await_pool_s: float | None = None
) -> None:
    worker = WarmProcessWorker(work_pool_name=pool, name=name, limit=limit)
    seconds = await anyio.to_thread.run_sync(worker.warm_up)
    complete_models()  # not on the first run's submission
    print(f"warm fork server ready in {seconds:.1f}s", flush=True)
    api = get_current_settings().api.url
    if await_pool_s is not None and api:  # without a URL Prefect's setup says what is missing
        await anyio.to_thread.run_sync(wait_for_pool, api, pool, await_pool_s)
    print(f"polling pool {pool!r}", flush=True)
    async with anyio.create_task_group() as group:
        group.start_soon(poll_when_nudged, worker)
        group.start_soon(poll_when_a_slot_frees, worker)
        group.start_soon(keep_related_fresh, worker)
        await worker.start(printer=print)
        group.cancel_scope.cancel()


async def keep_related_fresh(worker: WarmProcessWorker, not_found_s: float = 2.0) -> None:
    """``RelatedObjects.prefill`` for the worker's pool at its start and then every half
    ``RELATED_FRESH_S``, so that no run, the first after a start or after a quiet spell
    included, reads them itself (4 requests every 30 s). While the pool has no deployments
    yet (``exportflow serve`` deploys once the worker waits), every ``not_found_s``. A failed
    read is only logged: the runs then read what their events name, as before."""
    from prefect import get_client

    while True:
        found = 0
        try:
            async with get_client() as client:
                found = await worker.related.prefill(client)
        except Exception as exc:
            _log.debug("could not read the pool's objects ahead: %s", exc)
        await anyio.sleep(worker.related.fresh_s / 2 if found else not_found_s)


async def poll_when_nudged(worker: ProcessWorker, home: Path | None = None) -> None:
    """Poll the pool at once when a run was just created on this machine (``core.nudge``) and
    this worker has a free slot, besides Prefect's own poll loop: nudges that arrive during a
    poll make one more."""
    from prefect.logging import get_logger

    logger = get_logger("worker.nudge")  # "prefect.worker.nudge": the worker's log, at INFO
    sock = nudge.listen(home)
    if sock is None:
        logger.info("no nudge socket here; new runs are found by polling alone")
        return
    try:
        while True:
            await anyio.wait_readable(sock)
            nudge.drain(sock)
            if not worker.is_setup:
                continue  # still starting: its first poll comes right after
            if not _has_free_slot(worker):
                # Every slot taken (a burst): the poll when one frees takes the next run.
                # Polling at each nudge made 20 exports submitted at once take 31-34 s instead
                # of 25-27 s (make bench, alternating): each poll is a write to Prefect's
                # database, which the running runs' own state changes wait on.
                logger.info("nudged: every slot taken, the next run goes when one frees")
                continue
            await _poll_now(worker, logger, "nudged")
    finally:
        nudge.close(sock)


async def poll_when_a_slot_frees(worker: WarmProcessWorker) -> None:
    """Poll the pool at once whenever a run of this worker gives its slot back, besides
    Prefect's own poll loop: waiting runs (a burst, runs created while every slot was taken)
    start without waiting for the next regular poll, so that poll can be seconds apart
    (``PREFECT_WORKER_QUERY_SECONDS``, 2 s under ``make serve``) instead of polling an idle
    pool twice a second. Slots freed during a poll make one more."""
    from prefect.logging import get_logger

    logger = get_logger("worker.nudge")
    while True:
        await worker.slot_freed.wait()
        if not worker.is_setup:
            continue
        await _poll_now(worker, logger, "a slot freed")


async def _poll_now(worker: ProcessWorker, logger: Any, why: str) -> None:
    """One poll of the pool outside Prefect's loop, logged as ``<why>: polled the pool at
    once, <n> run(s) submitted``; a failure is left to the regular poll loop to report."""
    try:
        runs = await worker.get_and_submit_flow_runs()
    except Exception:  # the regular poll loop reports and retries
        logger.debug("%s: a poll failed", why, exc_info=True)
    else:
        logger.info("%s: polled the pool at once, %d run(s) submitted", why, len(runs))


class Wakeup:
    """A level-triggered wake-up for one waiter: ``set`` any number of times, and the next
    ``wait`` returns once (and clears it); sets while nobody waits are kept, not lost."""

    def __init__(self) -> None:
        self._pending = False
        self._event: anyio.Event | None = None  # made by ``wait``, inside the event loop

    def set(self) -> None:
        self._pending = True
        if self._event is not None:
            self._event.set()

    async def wait(self) -> None:
        while not self._pending:
            self._event = anyio.Event()
            await self._event.wait()
        self._pending = False
        self._event = None


def _has_free_slot(worker: ProcessWorker) -> bool:
    """The worker could submit a run now (with ``--limit``; without one Prefect keeps no
    count, and every nudge polls)."""
    try:
        limiter = worker.limiter
    except RuntimeError:  # no limit: no limiter
        return True
    return bool(limiter.borrowed_tokens < limiter.total_tokens)


def wait_for_pool(api: str, pool: str, timeout_s: float, every_s: float = 0.25) -> None:
    """Wait until the Prefect API at ``api`` answers and has the work pool ``pool``.

    For a worker started beside the server that creates the pool (``exportflow serve``), so
    that it warms up while the server starts: Prefect's own worker would otherwise create the
    pool itself the moment the server answers, or, with the server not up yet, retry its
    first sync at its heartbeat interval (30 s). Any answer but 404 or a 5xx ends the wait:
    Prefect's setup then reports what is wrong, as it would have."""
    import httpx

    url = f"{api.rstrip('/')}/work_pools/{pool}"
    deadline = time.monotonic() + timeout_s
    said = False
    while True:
        try:
            status = httpx.get(url, timeout=5).status_code
        except httpx.HTTPError:
            status = None
        if status is not None and status != 404 and status < 500:
            return
        if time.monotonic() >= deadline:
            why = "not up" if status is None else f"answered {status}"
            raise SystemExit(f"gave up after {timeout_s:.0f}s waiting for pool {pool!r} ({why})")
        if not said:
            print(f"waiting for Prefect at {api} to have pool {pool!r}", flush=True)
            said = True
        time.sleep(every_s)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--pool", required=True, help="The process work pool to poll.")
    parser.add_argument("--name", default=None, help="Worker name shown in the UI.")
    parser.add_argument("--limit", type=int, default=None, help="Most flow runs at once.")
    parser.add_argument(
        "--await-pool",
        type=float,
        default=None,
        metavar="SECONDS",
        help="After warming up, wait this long at most for the API to have the pool (a worker"
        " started beside the server that creates it) instead of creating it.",
    )
    args = parser.parse_args(argv)
    # Run as ``-m``, this file is ``__main__``; the fork server's children unpickle
    # ``run_engine`` by its importable name, so use the module under that name.
    from prefect.utilities.processutils import setup_signal_handlers_worker

    from deployments import worker

    # As ``prefect worker start``: the first SIGTERM/SIGINT stops polling and ends the runs'
    # supervision cleanly; a second one kills.
    setup_signal_handlers_worker(os.getpid(), "the warm worker", print)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(worker._serve(args.pool, args.name, args.limit, args.await_pool))


if __name__ == "__main__":
    main()
