"""The ``export-part`` flow: one key range of a parallel export, run on the work pool.

The coordinator (``flows.parallel``) launches one run per part with ``run_deployment``, so
the part runs appear under the export's run in the Prefect UI. The parameters are the
coordinator's ``PartSpec``; the work itself is ``tasks.parts.run_part``.
"""

from __future__ import annotations

import uuid
from typing import Any, cast

from prefect import flow
from prefect.runtime import flow_run

from core.types import FieldType
from tasks.parts import PartSpec, run_part

PART_FLOW = "export-part"
PART_DEPLOYMENT = f"{PART_FLOW}/export-part"
"""``flow name/deployment name`` of the part deployment in ``prefect.yaml``."""


def _run_name() -> str:
    params = flow_run.parameters or {}
    return f"part-{params.get('part', '?')}-of-{str(params.get('job_id', ''))[:8]}"


@flow(name=PART_FLOW, flow_run_name=_run_name, retries=0)
def export_part(
    job_id: str,
    part: int,
    attempt: int,
    parts: int,
    snapshot: str,
    lower: dict[str, Any] | None,
    upper: dict[str, Any] | None,
    metadata_keys: list[str],
    now: str,
    metadata_types: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Export one key range of a parallel export (launched by its coordinator, not by hand)."""
    spec = PartSpec(
        job_id,
        part,
        attempt,
        parts,
        snapshot,
        lower,
        upper,
        metadata_keys,
        now,
        cast("dict[str, FieldType]", metadata_types or {}),
    )
    run_id = uuid.UUID(flow_run.id) if flow_run.id else None
    return run_part(spec, run_id)
