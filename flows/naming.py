"""Names of export flow runs in the Prefect UI: ``{entity}-{tenant}-{short id}``."""

from __future__ import annotations

from collections.abc import Callable

from prefect.runtime import flow_run


def run_namer(entity_name: str) -> Callable[[], str]:
    """A ``flow_run_name`` callable: ``voucher-acme-1d72cad8`` (the job id's first block when
    the API launched the run, else the flow run's)."""

    def name() -> str:
        params = flow_run.parameters or {}
        tenant = str(params.get("tenant") or "unknown")[:40]
        short = ""
        for tag in flow_run.tags or []:
            if tag.startswith("exportflow-job:"):
                short = tag.removeprefix("exportflow-job:")[:8]
        return f"{entity_name}-{tenant}-{short or str(flow_run.id or '')[:8]}"

    return name
