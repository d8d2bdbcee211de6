"""One part of a parallel export: read a key range in the coordinator's snapshot, write it as
a piece of the final file, store it under the export's temp prefix, record it on its
``export_parts`` row.

Plain code (no Prefect context needed): the ``export-part`` flow calls it on a worker, the
in-process launcher calls it in a thread. The part rebuilds the plan from the job row (as the
coordinator did, with the coordinator's ``now`` for relative dates), so the parameters stay
the single source of what is exported. It writes only its own part row, fenced by attempt.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from core.errors import ExportError
from core.settings import get_settings
from core.types import FieldType
from db import jobs, parts
from db.engine import get_engine
from entities import ENTITIES
from query.plan import parse_parameters, plan_export
from query.split import Bound, part_plan
from storage.blocks import storage_from_settings
from storage.keys import part_key
from tasks.extract import Extract, PartRead
from tasks.write import Throttle, extension_for, write_file, write_options

PROGRESS_EVERY_S = 1.0
"""How often a part records its progress (the coordinator sums the parts' rows)."""

log = logging.getLogger(__name__)


class PartSuperseded(ExportError):
    """This part attempt is no longer the current one (retried, or the export ended)."""

    key = "part_superseded"


@dataclass(frozen=True)
class PartSpec:
    """Everything a part run needs; also the ``export-part`` flow's parameters."""

    job_id: str
    part: int
    attempt: int
    parts: int
    snapshot: str
    lower: Bound | None
    upper: Bound | None
    metadata_keys: list[str]
    now: str
    """The coordinator's anchor for relative dates (ISO 8601)."""
    metadata_types: dict[str, FieldType] = field(default_factory=dict)
    """The coordinator's type of each metadata column (every part writes the same types)."""

    def as_parameters(self) -> dict[str, Any]:
        return dict(self.__dict__)


def run_part(spec: PartSpec, flow_run_id: uuid.UUID | None = None) -> dict[str, Any]:
    """Write, store and record one part; raises (after recording FAILED) on any error."""
    engine = get_engine()
    settings = get_settings()
    job_id = uuid.UUID(spec.job_id)
    job = jobs.get_job(engine, job_id)
    started = parts.start_part(
        engine,
        job_id,
        spec.part,
        spec.attempt,
        flow_run_id=flow_run_id,
        host=socket.gethostname(),
        pid=os.getpid(),
    )
    if not started:
        raise PartSuperseded(f"part {spec.part} attempt {spec.attempt} is not current")
    root = settings.home / "tmp"
    root.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=f"part-{job_id}-{spec.part}-", dir=root))
    try:
        entity = ENTITIES[job.exported_object]
        plan = plan_export(
            entity,
            job.tenant,
            parse_parameters(job.parameters),
            now=datetime.fromisoformat(spec.now),
        )
        options = replace(
            write_options(plan, settings),
            opening=spec.part == 0,
            closing=spec.part == spec.parts - 1,
        )
        progress = Throttle(
            lambda n: parts.record_part_progress(engine, job_id, spec.part, spec.attempt, n),
            PROGRESS_EVERY_S,
        )

        def opened(extract: Extract) -> None:
            if extract.backend_pid is not None:
                parts.note_part_backend(
                    engine, job_id, spec.part, spec.attempt, extract.backend_pid
                )

        produced = write_file(
            engine,
            part_plan(plan, spec.lower, spec.upper),
            workdir / "part",
            settings=settings,
            options=options,
            on_progress=progress,
            export_id=spec.job_id,
            part=PartRead(spec.snapshot, spec.metadata_keys, dict(spec.metadata_types)),
            on_open=opened,
        )
        progress.flush()
        extension, _ = extension_for(plan)
        storage = storage_from_settings(settings)
        key = part_key(job.tenant, job_id, spec.part, spec.attempt, extension)
        stored = storage.put(produced.path, key)
        finished = parts.finish_part(
            engine,
            job_id,
            spec.part,
            spec.attempt,
            row_count=produced.row_count,
            bytes=produced.bytes,
            sha256=produced.sha256,
            storage_key=stored.key,
        )
        if not finished:
            storage.delete(stored)
            raise PartSuperseded(f"part {spec.part} attempt {spec.attempt} was superseded")
        log.info(
            "part %s/%s of export %s: %s rows, %s bytes",
            spec.part + 1,
            spec.parts,
            spec.job_id,
            produced.row_count,
            produced.bytes,
        )
        return {"part": spec.part, "rows": produced.row_count, "bytes": produced.bytes}
    except BaseException as exc:
        if not isinstance(exc, PartSuperseded):
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            message = getattr(exc, "message", None) or f"{type(exc).__name__}: {text}"
            try:
                parts.fail_part(engine, job_id, spec.part, spec.attempt, message)
            except Exception as record_error:  # the coordinator also sees the dead run
                log.warning("could not record part failure: %s", record_error)
        raise
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
