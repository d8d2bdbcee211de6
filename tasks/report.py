"""What a Prefect UI user sees of an export run: tags, and artifacts on the run's page.

* tags ``exportflow``, the channel, ``entity:<name>``, ``tenant:<tenant>`` and the job tag on
  runs started from the UI, a schedule or the CLI (the API tags its runs when it launches them);
* ``<entity>-<tenant>-progress``: a progress artifact, shown once the export has run a second
  (or at its end), then updated as chunks land (at most once a second, with the job row's
  progress);
* ``<entity>-<tenant>-download``: a link to the API's download URL with a signed, expiring
  token (``db.links``), which works from a browser while the API runs;
* ``<entity>-<tenant>-result``: a table of the result (rows, bytes, sha256, columns, timings);
* ``<entity>-<tenant>-quality``: the Great Expectations results as markdown (each expectation,
  pass/fail, observed values), the same report as the API's ``result.quality``;
* on failure, ``<entity>-<tenant>-error``: the message the job row records.

Keys make the latest export per entity and tenant show on Prefect's Artifacts page. An
artifact is a view: a failure to create one is logged and never fails the export.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import datetime
from typing import Any

from prefect import get_run_logger
from prefect.exceptions import MissingContextError

from core.settings import get_settings
from db.engine import get_engine
from db.jobs import Job, job_tag
from db.links import download_url, public_base_url


def artifact_key(job: Job, what: str) -> str:
    """``voucher-acme-progress``: lowercase letters, digits and dashes, as Prefect requires."""
    stem = re.sub(r"[^a-z0-9-]+", "-", f"{job.exported_object}-{job.tenant}".lower())
    return f"{stem.strip('-')}-{what}"


def run_tags(job: Job, channel: str) -> list[str]:
    """The tags of an export run (the same set the API gives the runs it launches)."""
    return [
        "exportflow",
        channel.lower(),
        f"entity:{job.exported_object}",
        f"tenant:{job.tenant}",
        job_tag(job.id),
    ]


def tag_flow_run(flow_run_id: uuid.UUID | None, job: Job, channel: str) -> None:
    """Add the export's tags to a run that was not launched with them (UI, schedule, CLI)."""
    if flow_run_id is None:
        return
    _quietly("tag the flow run", lambda: _add_tags(flow_run_id, run_tags(job, channel)))


def _add_tags(flow_run_id: uuid.UUID, tags: list[str]) -> None:
    from prefect import get_client

    with get_client(sync_client=True) as client:
        current = list(client.read_flow_run(flow_run_id).tags or [])
        client.update_flow_run(flow_run_id, tags=[*current, *(t for t in tags if t not in current)])


ProgressListener = Callable[[Job, int, int], None]
"""``(job, rows written, total)``: told as an in-process export writes (the CLI's bar)."""

_LISTENERS: list[ProgressListener] = []


@contextmanager
def progress_listener(listener: ProgressListener) -> Iterator[None]:
    """Tell ``listener`` the progress of exports run in this process while the block runs."""
    _LISTENERS.append(listener)
    try:
        yield
    finally:
        _LISTENERS.remove(listener)


def _tell(job: Job, rows: int, total: int) -> None:
    for listener in list(_LISTENERS):
        with suppress(Exception):  # a display must never fail the export
            listener(job, rows, total)


PROGRESS_SHOWN_AFTER_S = 1.0
"""The progress artifact is created this long after the count (or at the end, if sooner)."""


class ProgressArtifact:
    """A progress artifact of one export: created at the count, updated per (throttled) chunk.

    Listeners (``progress_listener``) hear the same updates at once. Prefect hears them from
    a thread of this artifact's own, so the stream never waits on Prefect's store (a SQLite
    store locked for 60 s once held a 1M-row export at its count for 62 s); updates that pile
    up meanwhile are coalesced into the latest. ``close`` waits a little for the last one.

    Prefect hears the first ``shown_after_s`` after the count: an export that ends sooner
    (most are small) makes one request, the artifact at its final value, instead of a create
    at 0 % and two updates a few milliseconds apart (three of the ~40 requests an export
    makes to the Prefect server, whose CPU bounds a burst of small exports).
    """

    def __init__(self, job: Job, shown_after_s: float = PROGRESS_SHOWN_AFTER_S) -> None:
        self.job = job
        self.shown_after_s = shown_after_s
        self.total = 0
        self.artifact_id: uuid.UUID | None = None
        self._context = contextvars.copy_context()  # the run's, so the artifact belongs to it
        self._wake = threading.Condition()
        self._latest: int | None = None
        self._closing = False
        self._thread: threading.Thread | None = None

    def start(self, total: int) -> None:
        self.total = total
        _tell(self.job, 0, total)
        self._send(0)

    def update(self, rows: int) -> None:
        _tell(self.job, rows, self.total)
        self._send(rows)

    def close(self, wait_s: float = 5.0) -> None:
        """Send what is pending, waiting at most ``wait_s`` for Prefect to take it."""
        with self._wake:
            self._closing = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(wait_s)

    def _send(self, rows: int) -> None:
        with self._wake:
            self._latest = rows
            self._wake.notify()
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._context.run,
                    args=(self._sender,),
                    daemon=True,
                    name=f"progress-{self.job.id}",
                )
                self._thread.start()

    def _sender(self) -> None:
        shown_at = time.monotonic() + self.shown_after_s
        with self._wake:  # the first: once the export ran a while, or at its end
            while not self._closing and (left := shown_at - time.monotonic()) > 0:
                self._wake.wait(left)
        while True:
            with self._wake:
                while self._latest is None and not self._closing:
                    self._wake.wait()
                rows, self._latest = self._latest, None
                if rows is None:  # closing, nothing pending
                    return
            if self.artifact_id is None:
                _quietly("create the progress artifact", functools.partial(self._create, rows))
            else:
                _quietly("update the progress artifact", functools.partial(self._update, rows))

    def _percent(self, rows: int) -> float:
        return 100.0 if not self.total else min(100.0, 100.0 * rows / self.total)

    def _create(self, rows: int) -> None:
        from prefect.artifacts import create_progress_artifact

        created: Any = create_progress_artifact(  # sync context: the id, not a coroutine
            self._percent(rows),
            key=artifact_key(self.job, "progress"),
            description=self._describe(rows),
        )
        self.artifact_id = uuid.UUID(str(created))

    def _update(self, rows: int) -> None:
        from prefect.artifacts import update_progress_artifact

        assert self.artifact_id is not None
        update_progress_artifact(
            self.artifact_id, self._percent(rows), description=self._describe(rows)
        )

    def _describe(self, rows: int) -> str:
        return (
            f"{self.job.exported_object} export {self.job.id} for {self.job.tenant}: "
            f"{rows:,} of {self.total:,} rows written"
        )


def publish_result(job: Job, write_seconds: float | None = None) -> None:
    """The link, result table and quality artifacts of a finished (DONE) job."""
    _quietly("create the result artifacts", lambda: _publish_result(job, write_seconds))


def _publish_result(job: Job, write_seconds: float | None) -> None:
    from prefect.artifacts import (
        create_link_artifact,
        create_markdown_artifact,
        create_table_artifact,
    )

    result = job.result or {}
    settings = get_settings()
    url = download_url(get_engine(), public_base_url(settings), job.id, settings, job.expires_at)
    create_link_artifact(
        url,
        link_text=f"Download {job.exported_object} export, {_size(result.get('bytes'))}",
        key=artifact_key(job, "download"),
        description=f"Signed link through the exports API, valid "
        f"{settings.download_token_ttl_s // 3600} h (never past the file's expiry, "
        f"{_when(job.expires_at)}). Stored at `{result.get('location', '')}`.",
    )
    create_table_artifact(
        result_table(job, write_seconds),
        key=artifact_key(job, "result"),
        description=f"Export {job.id}: what the file holds and how long it took.",
    )
    create_markdown_artifact(
        quality_markdown(result.get("quality")),
        key=artifact_key(job, "quality"),
        description="Great Expectations results over every exported row.",
    )


def publish_failure(job: Job, message: str) -> None:
    """A markdown artifact with the reason a job failed (what the job row records)."""

    def create() -> None:
        from prefect.artifacts import create_markdown_artifact

        create_markdown_artifact(
            f"# Export failed\n\n**{job.exported_object}** export `{job.id}` for tenant "
            f"`{job.tenant}`\n\n> {message}\n",
            key=artifact_key(job, "error"),
            description="Why the export failed.",
        )

    _quietly("create the failure artifact", create)


def result_table(job: Job, write_seconds: float | None = None) -> list[dict[str, Any]]:
    """The result as (field, value) rows: file facts, columns, timings."""
    result = job.result or {}
    columns = result.get("columns") or []
    rows: list[tuple[str, Any]] = [
        ("export id", str(job.id)),
        ("entity", job.exported_object),
        ("tenant", job.tenant),
        ("channel", job.channel),
        ("format", result.get("content_type") or job.format),
        ("rows", f"{result.get('row_count', 0):,}"),
        ("bytes", f"{result.get('bytes', 0):,} ({_size(result.get('bytes'))})"),
        ("sha256", result.get("sha256", "")),
        ("columns", f"{len(columns)}: " + ", ".join(f"{c['name']} ({c['type']})" for c in columns)),
        ("stored at", result.get("location", "")),
        ("expires at", _when(job.expires_at)),
    ]
    if job.started_at is not None:
        rows.append(("queued", f"{(job.started_at - job.created_at).total_seconds():.1f} s"))
    if write_seconds is not None:
        rows.append(("read + validate + write", f"{write_seconds:.1f} s"))
    if job.started_at is not None and job.finished_at is not None:
        rows.append(("total run", f"{(job.finished_at - job.started_at).total_seconds():.1f} s"))
    return [{"field": name, "value": str(value)} for name, value in rows]


def quality_markdown(quality: dict[str, Any] | None) -> str:
    """The quality report as a markdown table: one row per expectation."""
    if not quality:
        return "# Data quality\n\nNo validation report for this export."
    if quality.get("skipped"):
        return f"# Data quality\n\nNot validated: {quality['skipped']}."
    verdict = "all expectations held" if quality.get("success") else "**some expectations failed**"
    lines = [
        "# Data quality (Great Expectations)",
        "",
        f"{quality.get('rows_checked', 0):,} rows checked in {quality.get('chunks', 0)} chunk(s):"
        f" {verdict} (policy on failure: `{quality.get('on_invalid')}`).",
        "",
        "| column | expect values to | arguments | result | unexpected | observed |",
        "|---|---|---|---|---|---|",
    ]
    for item in quality.get("expectations") or []:
        check = str(item.get("expectation", "")).removeprefix("expect_column_values_to_")
        args = "; ".join(f"{k}: {_listed(v)}" for k, v in item.get("args", {}).items()) or "-"
        result = "pass" if item.get("success") else "**FAIL**"
        unexpected = f"{item.get('unexpected_count', 0):,}"
        if item.get("examples"):
            unexpected += " e.g. " + ", ".join(f"`{e}`" for e in item["examples"][:3])
        observed = "; ".join(
            f"{k}: {_listed(v)}"
            for k, v in (item.get("observed") or {}).items()
            if k != "more_values"
        )
        lines.append(
            f"| `{item.get('column')}` | {check} | {_cell(args)} | {result} "
            f"| {_cell(unexpected)} | {_cell(observed)} |"
        )
    lines += ["", "Each check is Great Expectations' `expect_column_values_to_<check>`."]
    return "\n".join(lines) + "\n"


def _listed(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ", ".join(map(str, value))
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _size(n: Any) -> str:
    size = float(n or 0)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size} B"


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else "-"


def _quietly(what: str, action: Callable[[], object]) -> None:
    try:
        action()
    except Exception as exc:  # an artifact is a view of the job: never fail the export
        try:
            logger: Any = get_run_logger()
        except MissingContextError:  # outside a run (or a thread without its context)
            logger = logging.getLogger(__name__)
        logger.warning("could not %s: %s", what, exc)
